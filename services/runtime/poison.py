"""Poison isolation: a batch that fails for any reason but an outage is split until the record at fault stands alone.

The contracts refuse what they can name; this catches what only a later layer refuses (the engine, the database,
a bug meeting an odd input). Without it such a record fails its batch on every redelivery and stops its partition.
Halves that succeed keep their effects (the pipelines are idempotent, so a half run again repeats nothing); the
record that fails alone is dead-lettered `unprocessable: <error type>`, never with the error's text, which may
quote the record. An outage is raised untouched, so the batch is redelivered and waited out.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from services.runtime.deadletter import dead_letter
from services.runtime.kafka import Outgoing
from services.runtime.retry import is_outage

log = logging.getLogger(__name__)

Handle = Callable[[Sequence[Any]], Awaitable[None]]
Publish = Callable[[list[Outgoing]], Awaitable[None]]
Forget = Callable[[Any], Awaitable[None]]


async def isolate_poison(
    records: Sequence[Any], handle: Handle, publish: Publish, invalid_topic: str, on_poison: Callable[[], None],
    forget: Forget | None = None, *, source: str,
) -> None:
    """Handle a batch; if it fails for a reason that is not an outage, handle each half alone, down to single records.

    `forget` drops a dead-lettered record from wherever it was kept for another try (dispatch's parked updates);
    `source` is the service, the dead letters' `ce_source`.
    """
    try:
        await handle(records)
    except Exception as error:
        if is_outage(error):
            raise
        if len(records) == 1:
            await publish([dead_letter(records[0], f"unprocessable: {type(error).__name__}", invalid_topic, source=source)])
            if forget is not None:
                await forget(records[0])
            on_poison()
            log.warning("a record of %s failed alone (%s): dead-lettered", records[0].topic, type(error).__name__)
            return
        log.warning("a batch of %d failed (%s): handling each half alone", len(records), type(error).__name__)
        half = len(records) // 2
        await isolate_poison(records[:half], handle, publish, invalid_topic, on_poison, forget, source=source)
        await isolate_poison(records[half:], handle, publish, invalid_topic, on_poison, forget, source=source)
