"""Dead-letter operations shared by ``./manage.py dlq`` and the admin.

The AMQP itself is in :class:`zerver.lib.queue.QueueClient` (``peek``,
``take``, ``purge``, ``depths``); this module decides what a replay means
for the notifications behind the events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zerver.lib.queue import QueueClient, dlq_name, replay_headers, retry_delays, retry_queue_name


@dataclass
class QueueCounts:
    """Ready messages of one queue's topology; None where a queue does not exist (yet)."""

    queue: str
    main: int | None
    retrying: int | None
    dead: int | None


def counts(client: QueueClient, queues: list[str]) -> list[QueueCounts]:
    """Main, retry (all steps summed) and dead-letter counts per queue, in one pass of passive declares."""
    names = {q: (q, [retry_queue_name(q, d) for d in retry_delays()], dlq_name(q)) for q in queues}
    flat = [n for main, retries, dlq in names.values() for n in (main, *retries, dlq)]
    depth = client.depths(flat)
    out = []
    for queue, (main, retries, dlq) in names.items():
        retry_counts = [depth[r] for r in retries if depth[r] is not None]
        out.append(QueueCounts(queue, depth[main], sum(retry_counts) if retry_counts else None, depth[dlq]))
    return out


def replay(
    client: QueueClient,
    queue_name: str,
    limit: int | None = None,
    chunk: int = 100,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Move dead letters of ``queue_name`` back onto it with a fresh attempt count; returns how many.

    Chunk by chunk: take messages off the DLQ (unacknowledged), move their
    failed notifications back to pending so a worker may claim them again,
    publish them to the main queue in one transaction, and only then
    acknowledge them on the DLQ. A crash in between leaves a message in both
    queues, never in neither (consumers are idempotent by notification id).

    At most the number of dead letters present at the start is replayed, so
    events that fail again and return to the DLQ meanwhile are not looped on.
    """
    from workers.delivery import parse_id
    from zerver.actions.operations import reopen

    client.declare(queue_name)
    dlq = dlq_name(queue_name)
    total = client.message_count(dlq)
    if limit is not None:
        total = min(total, limit)
    done = 0
    while done < total:
        messages = client.take(dlq, min(chunk, total - done))
        if not messages:
            break
        reopen(i for m in messages if (i := parse_id(m.event)) is not None)
        client.publish_raw([(queue_name, m.body, replay_headers(m.headers)) for m in messages])
        client.ack_through(messages[-1].delivery_tag)
        done += len(messages)
        if progress is not None:
            progress(len(messages))
    return done
