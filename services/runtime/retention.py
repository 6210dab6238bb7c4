"""Retention of personal data, shared by dispatch and follow-up: which disputes are due for erasure, and what erasure keeps.

Pure: the stores say which disputes are still needed (each service defines it in its store) and when each was
first found not needed; this module decides, and the stores write what it decides.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from schemas.common import Party
from schemas.disputes import DisputeReported

# Stands in for every erased text: the contracts want a description and party names that are not empty.
ERASED = "[erased]"


@dataclass(frozen=True)
class Kept:
    """A dispute whose personal data is still stored: whether it is still needed, and since when it is not."""

    dispute_id: str
    needed: bool
    settled_at: datetime | None  # when a retention pass first found it not needed; None while needed


@dataclass
class RetentionPlan:
    """What a retention pass writes: disputes found settled now, disputes needed again, disputes to erase."""

    settled: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)

    def touched(self) -> list[str]:
        """Return every dispute the plan changes, in id order (the order rows are locked in)."""
        return sorted(self.settled + self.reopened + self.erased)


def plan_retention(kept: Iterable[Kept], now: datetime, days: int) -> RetentionPlan:
    """Decide a retention pass: stamp disputes no longer needed, unstamp those needed again, erase those settled `days` ago."""
    # The clock starts when a pass first finds the dispute settled, not at its last event: the stores do not date
    # every way a dispute settles, and a pass runs hourly, so the retention is at most that much longer.
    cutoff = now - timedelta(days=days)
    plan = RetentionPlan()
    for dispute in kept:
        if dispute.needed:
            if dispute.settled_at is not None:
                plan.reopened.append(dispute.dispute_id)
        elif dispute.settled_at is None:
            plan.settled.append(dispute.dispute_id)
        elif dispute.settled_at <= cutoff:
            plan.erased.append(dispute.dispute_id)
    return plan


def erased_report(report: DisputeReported) -> DisputeReported:
    """Return the report without its description and the parties' names, ID numbers, phones, ages and vulnerabilities.

    Every figure survives: ids, dates, source, region, category, party count, roles and kinds of parties, amount, risk, history.
    """
    parties = [Party(role=p.role, kind=p.kind, name=ERASED) for p in report.parties]
    return report.model_copy(update={"description": ERASED, "parties": parties})
