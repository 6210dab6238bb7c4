"""The retention pass dispatch and follow-up share: page through the disputes not yet erased, decide, write.

The decision is `plan_retention`'s; each service's store says which disputes are still needed and does the SQL.
"""

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol, TypeVar

from schemas.disputes import DisputeReported
from services.runtime.retention import Kept, RetentionPlan, erased_report, plan_retention

T = TypeVar("T")
# Disputes read per transaction: the writing lock and the row locks are held one page at a time, never for the whole table.
PAGE = 500


class RetainingStore(Protocol):
    """What a store offers the retention pass."""

    @staticmethod
    async def retained_page(connection: Any, after: str, limit: int) -> list[Kept]:
        """Return up to `limit` disputes not yet erased, in id order after `after`, unlocked."""

    @staticmethod
    async def retained_locked(connection: Any, dispute_ids: list[str]) -> list[Kept]:
        """Return these disputes if not yet erased, locked in id order."""

    @staticmethod
    async def reports(connection: Any, dispute_ids: list[str]) -> dict[str, DisputeReported]:
        """Return the stored report of each of these disputes."""

    @staticmethod
    async def purge(connection: Any, plan: RetentionPlan, erased: Mapping[str, DisputeReported], now: datetime) -> None:
        """Stamp, unstamp and erase as planned."""


async def purge_pages(
    transaction: Callable[[Callable[[Any], Awaitable[T]]], Awaitable[T]],
    store: RetainingStore,
    now: datetime,
    days: int,
    counted: Callable[[int], None],
    page: int = PAGE,
) -> int:
    """Run one retention pass, a transaction per page; count each page's erased disputes as it commits; return the total."""
    after, total = "", 0
    while True:

        async def work(connection: Any, after: str = after) -> tuple[list[Kept], int]:
            kept = await store.retained_page(connection, after, page)
            seen = plan_retention(kept, now, days)
            if not seen.touched():
                return kept, 0
            # Decided again on the rows locked: a batch that reopened a dispute since the page was read wins.
            plan = plan_retention(await store.retained_locked(connection, seen.touched()), now, days)
            erased = {key: erased_report(report) for key, report in (await store.reports(connection, plan.erased)).items()}
            await store.purge(connection, plan, erased, now)
            return kept, len(erased)

        kept, count = await transaction(work)
        counted(count)
        total += count
        if len(kept) < page:
            return total
        after = kept[-1].dispute_id
