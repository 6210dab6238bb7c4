"""Retention's pure decisions: which disputes a pass stamps, unstamps and erases; what an erased report keeps; dead letters' lifetime."""

from datetime import timedelta

import pytest

from schemas.disputes import DisputeReported
from services.runtime.purge import purge_pages
from services.runtime.retention import ERASED, Kept, RetentionPlan, erased_report, plan_retention
from services.runtime.topics import contract_topics
from tests.support.samples import WAGE_REPORT, at

NOW = at("2026-12-01T10:00:00+08:00")
DAYS = 180
CUTOFF = NOW - timedelta(days=DAYS)

# (case, the dispute as the store sees it, the plan)
PASSES = [
    ("still needed, never settled: left alone", Kept("d", True, None), RetentionPlan()),
    ("settled for the first time: stamped now", Kept("d", False, None), RetentionPlan(settled=["d"])),
    ("needed again after it settled: unstamped", Kept("d", True, CUTOFF - timedelta(days=1)), RetentionPlan(reopened=["d"])),
    ("settled a day short of the retention: kept", Kept("d", False, CUTOFF + timedelta(days=1)), RetentionPlan()),
    ("settled exactly the retention ago: erased", Kept("d", False, CUTOFF), RetentionPlan(erased=["d"])),
    ("settled long ago: erased", Kept("d", False, CUTOFF - timedelta(days=400)), RetentionPlan(erased=["d"])),
]


@pytest.mark.parametrize("case, kept, expected", PASSES, ids=[row[0] for row in PASSES])
def test_a_pass_stamps_unstamps_or_erases_each_dispute(case, kept, expected):
    assert plan_retention([kept], NOW, DAYS) == expected


def test_a_pass_touches_its_disputes_in_id_order():
    kept = [Kept("c", False, CUTOFF), Kept("a", False, None), Kept("b", True, NOW), Kept("d", True, None)]
    plan = plan_retention(kept, NOW, DAYS)
    assert (plan.settled, plan.reopened, plan.erased, plan.touched()) == (["a"], ["b"], ["c"], ["a", "b", "c"])


MARKED = WAGE_REPORT.model_copy(
    update={
        "description": "MARK-DESC-7731 欠薪",
        "parties": [
            *WAGE_REPORT.parties,
            WAGE_REPORT.parties[0].model_copy(update={"name": "MARK-NAME-7731", "id_number": "MARKID7731", "phone": "+86 139 7731 0000", "age": 67}),
        ],
    }
)


def test_an_erased_report_keeps_every_figure_and_no_personal_data():
    erased = DisputeReported.model_validate_json(erased_report(MARKED).to_bytes())  # still a valid contract
    text = erased.to_bytes().decode()
    for planted in ("MARK-DESC-7731", "MARK-NAME-7731", "MARKID7731", "+86 139 7731 0000", "张某", "13900000002", "工人"):
        assert planted not in text
    assert erased.description == ERASED and {p.name for p in erased.parties} == {ERASED}
    assert all(p.id_number is None and p.phone is None and p.age is None and p.vulnerable == [] for p in erased.parties)
    kept = ("event_id", "dispute_id", "reported_at", "source", "region", "category", "party_count", "amount_cny", "risk", "history")
    assert {f: getattr(erased, f) for f in kept} == {f: getattr(MARKED, f) for f in kept}
    assert [(p.role, p.kind) for p in erased.parties] == [(p.role, p.kind) for p in MARKED.parties]


def test_dead_letter_topics_keep_a_week_and_flowing_topics_the_broker_default():
    week = str(7 * 24 * 3600 * 1000)
    retention = {spec.name: dict(spec.config).get("retention.ms") for spec in contract_topics()}
    assert {name: value for name, value in retention.items() if name.endswith(".invalid")} == {
        "disputes.invalid": week, "workorders.updates.invalid": week, "workorders.events.invalid": week, "followups.results.invalid": week,
    }
    assert {value for name, value in retention.items() if not name.endswith(".invalid")} == {None}


class MemoryStore:
    """Disputes in memory, as a store hands them to the retention pass; records each page it is asked for."""

    def __init__(self, kept: list[Kept]):
        self.kept = {k.dispute_id: k for k in kept}
        self.reports_of = {k.dispute_id: WAGE_REPORT.model_copy(update={"dispute_id": k.dispute_id}) for k in kept}
        self.erased: dict[str, DisputeReported] = {}
        self.pages: list[str] = []

    async def retained_page(self, connection, after, limit):
        self.pages.append(after)
        return [k for key, k in sorted(self.kept.items()) if key > after and key not in self.erased][:limit]

    async def retained_locked(self, connection, dispute_ids):
        return [self.kept[key] for key in sorted(dispute_ids) if key not in self.erased]

    async def reports(self, connection, dispute_ids):
        return {key: self.reports_of[key] for key in dispute_ids}

    async def purge(self, connection, plan, erased, now):
        for key in plan.settled:
            self.kept[key] = Kept(key, False, now)
        for key in plan.reopened:
            self.kept[key] = Kept(key, True, None)
        self.erased |= erased


async def test_a_pass_goes_page_by_page_and_counts_each_page_s_erasures():
    store = MemoryStore([Kept(f"d{n}", n % 3 == 0, CUTOFF if n % 2 else None) for n in range(7)])
    counted: list[int] = []

    async def transaction(work):
        return await work(None)

    assert await purge_pages(transaction, store, NOW, DAYS, counted.append, page=3) == 2
    assert store.pages == ["", "d2", "d5"] and counted == [1, 1, 0]
    assert sorted(store.erased) == ["d1", "d5"]  # not needed and settled long enough; d3 is needed again
    assert all(r.description == ERASED for r in store.erased.values())
    assert (store.kept["d3"].settled_at, store.kept["d2"].settled_at) == (None, NOW)


async def test_a_dispute_reopened_between_the_page_and_its_lock_is_not_erased():
    store = MemoryStore([Kept("d1", False, CUTOFF), Kept("d2", False, CUTOFF)])
    locked = store.retained_locked

    async def reopened_meanwhile(connection, dispute_ids):
        store.kept["d1"] = Kept("d1", True, CUTOFF)  # a batch issued a new attempt's orders and committed first
        return await locked(connection, dispute_ids)

    store.retained_locked = reopened_meanwhile

    async def transaction(work):
        return await work(None)

    assert await purge_pages(transaction, store, NOW, DAYS, lambda count: None) == 1
    assert list(store.erased) == ["d2"] and store.kept["d1"].settled_at is None
