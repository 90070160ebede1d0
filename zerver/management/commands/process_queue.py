"""Run queue workers: ``./manage.py process_queue --queue_name=NAME``.

One process per queue (and per shard) in production, kept up by supervisord
or systemd; ``--all`` runs every queue in one process for development.
SIGTERM or SIGINT: finish the batch in hand, acknowledge it, exit 0.

Each process also serves its Prometheus metrics (``/metrics`` on
``WORKER_METRICS_BASE_PORT`` + the index of its queue in ``--list``, so the
processes of one host never share a port; ``--metrics-port`` overrides it, which is
how the rendered deployment pins each process to the port its scrape config names) and writes a heartbeat per queue
for ``/health``.
"""

import threading
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from workers import metrics
from workers.base import (
    QueueProcessingWorker,
    get_worker,
    install_signal_handlers,
    registered_queues,
)
from workers.heartbeat import Heartbeat
from zerver.checks import require_production_settings


class Command(BaseCommand):
    help = "Consume events from RabbitMQ queues with their registered workers."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--queue_name",
            metavar="NAME",
            help="the queue to consume: a registered queue or one of its shards (NAME_shardN)",
        )
        parser.add_argument(
            "--worker_num",
            type=int,
            default=0,
            metavar="N",
            help="this process's number among the queue's workers; for a sharded queue named "
            "without its shard, the shard to consume (1-based)",
        )
        parser.add_argument(
            "--all", action="store_true", help="consume every registered queue, one thread each (development)"
        )
        parser.add_argument("--list", action="store_true", help="print the registered queues and exit")
        parser.add_argument(
            "--metrics-port",
            type=int,
            metavar="PORT",
            help="serve /metrics on this port (0: none); default WORKER_METRICS_BASE_PORT + the queue's --list index",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        require_production_settings()
        if options["list"]:
            for index, name in enumerate(registered_queues()):
                port = metrics.metrics_port(index)
                self.stdout.write(f"{name}\tmetrics port {port}" if port and options["verbosity"] > 1 else name)
            return
        if options["all"]:
            workers = [get_worker(name) for name in registered_queues()]
        elif options["queue_name"]:
            try:
                workers = [get_worker(options["queue_name"], options["worker_num"])]
            except (KeyError, ValueError) as e:
                raise CommandError(e.args[0]) from None
        else:
            raise CommandError("name a queue with --queue_name, or use --all or --list")
        install_signal_handlers(workers)
        serve_metrics(workers, options["metrics_port"])
        heartbeats = [Heartbeat(w.queue_name) for w in workers]
        for worker, heartbeat in zip(workers, heartbeats, strict=True):
            worker.heartbeat = heartbeat
        try:
            run(workers)
        finally:
            for heartbeat in heartbeats:
                heartbeat.stop()


def serve_metrics(workers: list[QueueProcessingWorker], port: int | None = None) -> None:
    """Start this process's metrics server, with ``queue_depth`` for the topology of its queues.

    ``port``: the one given on the command line (0: no server); None derives it from the queue's index.
    """
    queues = registered_queues()
    names = [w.queue_name for w in workers]
    if port is None:
        port = metrics.metrics_port(queues.index(names[0]) if len(workers) == 1 and names[0] in queues else 0)
    if not port:
        return
    metrics.register_queue_depth(lambda: names)
    metrics.serve(port)


def run(workers: list[QueueProcessingWorker]) -> None:
    """Run the workers until each has stopped; the main thread keeps receiving signals."""
    if len(workers) == 1:
        workers[0].start()
        return
    threads = [threading.Thread(target=w.start, name=w.queue_name, daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
