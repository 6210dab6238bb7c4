"""The triage batch pipeline with a real store (SQLite and PostgreSQL) and a recording publisher."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.triage.handlers import triaged_event_id
from services.triage.store import processed, sightings
from tests.support.pipelines import TRIAGE_NOW as NOW
from tests.support.pipelines import Record, triage_pipeline
from tests.support.samples import REASSESS, at, report_payload


@pytest.fixture
async def pipeline(database_url):
    processor, published, engine = await triage_pipeline(database_url)
    yield processor, published, engine
    await engine.dispose()


def report(n, **overrides):
    payload = report_payload(event_id=f"evt-{n}", dispute_id=f"D-{n}", **overrides)
    return Record("disputes.reported", json.dumps(payload).encode(), offset=n)


async def test_a_report_is_graded_with_a_deterministic_id(pipeline):
    processor, published, _ = pipeline
    await processor.process([report(1, party_count=4)])
    [event] = published.triaged()
    assert event.event_id == triaged_event_id("evt-1", "2026.11.1")
    assert (event.level, event.tier, event.source_event_id, event.triaged_at) == (2, "mediation_room", "evt-1", NOW)
    assert [o.header("ce_id") for o in published] == [event.event_id]


async def test_repeated_event_ids_have_no_second_effect(pipeline):
    processor, published, _ = pipeline
    await processor.process([report(1), report(1), report(2)])
    await processor.process([report(2), report(3)])
    assert sorted(e.source_event_id for e in published.triaged()) == ["evt-1", "evt-2", "evt-3"]
    assert processor.metrics.duplicates._value.get() == 2


# (case, bytes, reason prefix)
POISON = [
    ("empty", b"", "message: empty"),
    ("not JSON", b"\xff\xfe\x00", "(message): Invalid JSON"),
    ("naive time", json.dumps(report_payload(reported_at="2026-03-01T08:00:00")).encode(), "reported_at: Input should have timezone info"),
    ("from the future", json.dumps(report_payload(reported_at="2099-01-01T00:00:00+08:00")).encode(), "reported_at: later than"),
    ("missing parties", json.dumps({k: v for k, v in report_payload().items() if k != "parties"}).encode(), "parties: Field required"),
    # PostgreSQL refuses NUL in text; before the contract refused it, that batch was redelivered forever.
    ("NUL in the event id", json.dumps(report_payload(event_id="evt-\u0000")).encode(), "event_id: String should match pattern"),
    ("NUL in the description", json.dumps(report_payload(event_id="evt-9", description="争吵\u0000")).encode(), "description: String should match pattern"),
    ("too large", json.dumps(report_payload(description="吵" * 5000, parties=[report_payload()["parties"][0]] * 200)).encode() * 2, "message: "),
]


@pytest.mark.parametrize("case, value, reason", POISON, ids=[p[0] for p in POISON])
async def test_poison_goes_to_the_dead_letter_topic_and_good_neighbours_go_on(pipeline, case, value, reason):
    processor, published, _ = pipeline
    await processor.process([report(1), Record("disputes.reported", value, key=b"bad", partition=3, offset=42), report(2)])
    assert [e.source_event_id for e in published.triaged()] == ["evt-1", "evt-2"]
    [dead] = published.dead()
    assert dead.value == value and dead.key == b"bad"
    assert dead.header("dlq_reason").startswith(reason), dead.header("dlq_reason")
    assert (dead.header("dlq_source_topic"), dead.header("dlq_source_partition"), dead.header("dlq_source_offset")) == ("disputes.reported", "3", "42")


async def test_a_reassessment_is_graded_with_its_updated_history(pipeline):
    processor, published, _ = pipeline
    await processor.process([Record("disputes.reassess", REASSESS.to_bytes())])
    [event] = published.triaged()
    assert event.cause == "mediation_failed" and event.source_event_id == REASSESS.event_id
    assert event.report.history.failed_mediations == 2
    assert event.level == 2 and "L2-failed-mediation" in [r.id for r in event.matched_rules]


def wage(n, day, employer="宏达建筑劳务公司", phone=None, category="labor_wage"):
    parties = [
        {"role": "complainant", "kind": "person", "name": "工人", "phone": phone or f"1390000{n:04d}"},
        {"role": "respondent", "kind": "organization", "name": employer},
    ]
    reported_at = (at("2025-12-01T09:00:00+08:00") + timedelta(days=day)).isoformat()  # day 95 is still before NOW
    return report(n, category=category, parties=parties, reported_at=reported_at)


async def test_group_wage_risk_across_batches_and_within_one(pipeline):
    processor, published, _ = pipeline
    await processor.process([wage(1, 0)])
    await processor.process([wage(2, 2), wage(3, 6), wage(4, 20)])
    flags = {e.source_event_id: e.flags for e in published.triaged()}
    assert "group_wage_risk" not in flags["evt-2"]
    assert "group_wage_risk" in flags["evt-3"]
    assert "group_wage_risk" not in flags["evt-4"]  # 14 days after the others
    assert {e.source_event_id: e.level for e in published.triaged()}["evt-3"] == 3


async def test_repeat_parties_from_the_store_and_no_identifier_in_clear(pipeline):
    processor, published, engine = pipeline
    await processor.process([wage(1, 0, employer="甲公司", phone="13812345678")])
    await processor.process([wage(2, 89, employer="乙公司", phone="13812345678"), wage(3, 95, employer="丙公司", phone="13812345678")])
    await processor.process([wage(4, 96, employer="丁公司", phone="13812345678", category="contract_debt")])
    flags = {e.source_event_id: e.flags for e in published.triaged()}
    assert "repeat_parties" in flags["evt-2"]
    # evt-2 is 6 days before evt-3, and of the same matter (category and community): one quarrel reported again.
    assert "repeat_parties" not in flags["evt-3"]
    assert {e.source_event_id: e.same_matter for e in published.triaged()}["evt-3"] == ["D-2"]
    assert "repeat_parties" in flags["evt-4"]  # the same person, another matter: evt-2 and evt-3 repeat for it
    async with engine.connect() as connection:
        stored = [tuple(map(str, row)) for row in await connection.execute(select(sightings))]
    assert stored and not any("13812345678" in value or "甲公司" in value for row in stored for value in row)


async def test_processed_ids_are_forgotten_after_the_dedupe_window(pipeline):
    processor, _, engine = pipeline
    await processor.process([report(1)])
    await processor.store.purge(NOW + timedelta(days=6), 7, 90)
    assert await processor.store.already_processed(["evt-1"]) == {"evt-1"}
    await processor.store.purge(NOW + timedelta(days=8), 7, 90)
    assert await processor.store.already_processed(["evt-1"]) == set()
    async with engine.connect() as connection:
        assert (await connection.execute(select(processed))).first() is None


async def test_store_down_raises_after_retries_and_reports_not_ready(pipeline, monkeypatch):
    processor, published, _ = pipeline

    async def down(_ids):
        raise ConnectionRefusedError("database is down")

    monkeypatch.setattr(processor.store, "already_processed", down)
    monkeypatch.setattr("services.runtime.retry.asyncio.sleep", _no_wait)
    with pytest.raises(ConnectionRefusedError):
        await processor.process([report(1)])
    assert published == [] and not processor.readiness.ready
    assert processor.metrics.store_retries._value.get() == 5


async def _no_wait(_seconds):
    return None
