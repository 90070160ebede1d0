"""Inspect and empty dead-letter queues: ``./manage.py dlq list|show|replay|purge [--queue NAME]``.

``list`` counts, ``show`` prints messages with why they died (leaving them
in place), ``replay`` puts them back on their queue for a fresh set of
attempts, ``purge`` deletes them. A sharded queue named without its shard
means all of its shards.
"""

from __future__ import annotations

import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from workers.base import registered_queues
from zerver.lib import dead_letters
from zerver.lib.queue import QueueClient, QueueUnavailable, dlq_name, shard_queue_names


class Command(BaseCommand):
    help = "List, show, replay or purge dead-lettered events."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("action", choices=["list", "show", "replay", "purge"])
        parser.add_argument("--queue", metavar="NAME", help="a registered queue or shard (default for list/show: all)")
        parser.add_argument("--limit", type=int, metavar="N", help="at most N messages (show: default 10)")
        parser.add_argument("--yes", action="store_true", help="purge without asking")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        queues = self.queues(options["queue"], required=action in ("replay", "purge"))
        client = QueueClient()
        try:
            getattr(self, action)(client, queues, options)
        except QueueUnavailable as e:
            raise CommandError(f"RabbitMQ unavailable: {type(e.__cause__ or e).__name__}") from None
        finally:
            client.close()

    def queues(self, name: str | None, required: bool) -> list[str]:
        if name is None:
            if required:
                raise CommandError("name the queue with --queue")
            return registered_queues()
        names = shard_queue_names(name)
        unknown = [n for n in names if n not in registered_queues()]
        if unknown:
            raise CommandError(f"no registered queue {unknown[0]!r} (see ./manage.py process_queue --list)")
        return names

    def list(self, client: QueueClient, queues: list[str], options: dict[str, Any]) -> None:
        rows = dead_letters.counts(client, queues)
        width = max(len(r.queue) for r in rows)
        self.stdout.write(f"{'queue':<{width}}  {'ready':>8}  {'retrying':>8}  {'dead':>8}")
        for r in rows:
            cells = ["-" if n is None else str(n) for n in (r.main, r.retrying, r.dead)]
            self.stdout.write(f"{r.queue:<{width}}  {cells[0]:>8}  {cells[1]:>8}  {cells[2]:>8}")

    def show(self, client: QueueClient, queues: list[str], options: dict[str, Any]) -> None:
        limit = options["limit"] or 10
        for queue in queues:
            depth = client.depths([dlq_name(queue)])[dlq_name(queue)]
            if not depth:
                continue
            self.stdout.write(self.style.MIGRATE_HEADING(f"{dlq_name(queue)}: {depth} dead letters"))
            for n, message in enumerate(client.peek(dlq_name(queue), limit), 1):
                h = message.headers
                self.stdout.write(
                    f"#{n} failed at {h.get('x-dlq-failed-at', '?')} after {h.get('x-dlq-attempts', '?')} attempts\n"
                    f"   reason:    {h.get('x-dlq-reason', '')}\n"
                    f"   exception: {h.get('x-dlq-exception', '')}\n"
                    f"   event:     {message.body.decode(errors='replace')[:500]}"
                )
                if options["verbosity"] > 1 and h.get("x-dlq-traceback"):
                    self.stdout.write("   " + str(h["x-dlq-traceback"]).rstrip().replace("\n", "\n   "))

    def replay(self, client: QueueClient, queues: list[str], options: dict[str, Any]) -> None:
        for queue in queues:
            dlq = dlq_name(queue)
            total = client.depths([dlq])[dlq] or 0
            if options["limit"] is not None:
                total = min(total, options["limit"])
            with tqdm(total=total, desc=queue, unit="event", file=sys.stderr, disable=total < 1000) as bar:
                moved = dead_letters.replay(client, queue, options["limit"], progress=bar.update)
            self.stdout.write(f"{queue}: replayed {moved} events")

    def purge(self, client: QueueClient, queues: list[str], options: dict[str, Any]) -> None:
        for queue in queues:
            dlq = dlq_name(queue)
            depth = client.depths([dlq])[dlq] or 0
            if not options["yes"] and input(f"Delete {depth} dead letters from {dlq}? [y/N] ").lower() != "y":
                self.stdout.write(f"{dlq}: left alone")
                continue
            self.stdout.write(f"{dlq}: purged {client.purge(dlq) if depth else 0} messages")
