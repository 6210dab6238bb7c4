"""Follow-up timers with a fake clock on a real store: warnings, breaches, revisits, cancelling, catch-up, results."""

import asyncio
import contextlib
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import event, inspect

from schemas.disputes import ReassessmentRequested
from schemas.followups import FOLLOWUP_MESSAGE, FOLLOWUPS_DUE, FOLLOWUPS_RESULTS, FollowupDue, FollowupResult, ResultAnswered, due_topic, results_topic
from schemas.workorders import DisputeResolved, OrderStatusChanged
from services.followup.store import FollowupStore, retained_page_query
from services.followup.timers import followup_id
from services.runtime.clock import ManualClock
from services.runtime.store import create_engine, create_reader
from tests.support.conditions import wait_for
from tests.support.pipelines import Published, Record, followup_pipeline
from tests.support.pipelines import followup_processor as processor_on
from tests.support.samples import DUE_AT as DUE
from tests.support.samples import ISSUED_AT as ISSUED
from tests.support.samples import WAGE_REPORT
from tests.support.samples import order_issued as issued


@pytest.fixture
async def followup(database_url):
    processor, published, engine = await followup_pipeline(database_url, ISSUED)
    yield processor, processor.clock, published
    await engine.dispose()


def closed(order="wo-1", status="resolved"):
    return OrderStatusChanged(
        event_id=f"ev-{order}-{status}", dispute_id="D-2026-0002", attempt=1, at=ISSUED + timedelta(days=1), work_order_id=order,
        department="mediation_room", role="lead", previous_status="issued", status=status,
    )


def resolved(at_time=ISSUED + timedelta(days=2)):
    return DisputeResolved(
        event_id="ev-resolved", dispute_id="D-2026-0002", attempt=1, at=at_time, resolving_department="mediation_room", level=2, report=WAGE_REPORT,
    )


def records(*events, topic="workorders.events"):
    return [Record(topic, e.to_bytes(), offset=i) for i, e in enumerate(events)]


def dues(published, topic=FOLLOWUPS_DUE):
    return [FollowupDue.model_validate_json(o.value) for o in published if o.topic == topic]


def reassessments(published):
    return [ReassessmentRequested.model_validate_json(o.value) for o in published if o.topic == "disputes.reassess"]


async def test_an_open_order_gets_one_warning_then_one_breach_and_a_reassessment(followup):
    processor, clock, published = followup
    await processor.on_events(records(issued()))
    clock.advance(timedelta(days=7, hours=23))
    assert await processor.fire_due() == 0
    clock.advance(timedelta(hours=1))  # 80 % of ten days
    await processor.fire_due()
    assert [(d.kind, d.department) for d in dues(published)] == [("sla_warning", "mediation_room")]
    clock.advance(timedelta(days=2))
    await processor.fire_due()
    await processor.fire_due()
    assert [(d.kind, d.department) for d in dues(published)] == [("sla_warning", "mediation_room"), ("sla_breached", "governance_centre")]
    [request] = reassessments(published)
    assert (request.reason, request.history.sla_breaches, request.history.previous_level) == ("sla_breached", 1, 2)
    assert dues(published)[1].due_at == DUE and dues(published)[1].fired_at == clock.now()


async def test_an_order_closed_in_time_fires_nothing(followup):
    processor, clock, published = followup
    await processor.on_events(records(issued(), closed()))
    clock.advance(timedelta(days=30))
    await processor.fire_due()
    assert published == []


async def test_a_resolved_dispute_gets_its_revisits_with_contact_details(followup):
    processor, clock, published = followup
    await processor.on_events(records(issued(), closed(), resolved()))
    clock.advance(timedelta(days=9))
    await processor.fire_due()
    clock.advance(timedelta(days=30))
    await processor.fire_due()
    revisits = dues(published, due_topic("mediation_room"))
    assert [(d.kind, d.revisit_number, d.department) for d in revisits] == [("revisit", 1, "mediation_room"), ("revisit", 2, "mediation_room")]
    assert revisits[0].due_at == ISSUED + timedelta(days=9) and revisits[0].parties == WAGE_REPORT.parties
    # The operators' feed has the same revisits under the same ids, without anyone's details.
    feed = dues(published)
    assert [(d.followup_id, d.parties, d.disclosure) for d in feed] == [(d.followup_id, [], None) for d in revisits]
    assert [o.header("ce_id") for o in published if o.topic == FOLLOWUPS_DUE] == [d.followup_id for d in revisits]


async def test_a_new_attempt_cancels_pending_revisits(followup):
    processor, clock, published = followup
    await processor.on_events(records(issued(), closed(), resolved()))
    clock.advance(timedelta(days=10))
    await processor.fire_due()  # the 7-day revisit fires
    await processor.on_events(records(issued(order="wo-2", attempt=2)))  # reported again
    clock.advance(timedelta(days=30))
    await processor.fire_due()
    assert [d.revisit_number for d in dues(published) if d.kind == "revisit"] == [1]


async def test_timers_due_while_down_fire_once_on_start(followup, database_url):
    processor, clock, published = followup
    await processor.on_events(records(issued(), closed(), resolved()))
    clock.advance(timedelta(days=60))  # the service was down for two months
    restarted = processor_on(processor.store.engine, clock, published)
    await restarted.fire_due()
    await restarted.fire_due()
    assert sorted(d.revisit_number for d in dues(published)) == [1, 2]
    assert len({d.followup_id for d in dues(published)}) == 2


async def test_repeated_events_schedule_nothing_twice(followup):
    processor, clock, published = followup
    await processor.on_events(records(issued(), issued()))
    await processor.on_events(records(issued()))
    clock.advance(timedelta(days=11))
    await processor.fire_due()
    assert sorted(d.kind for d in dues(published)) == ["sla_breached", "sla_warning"]


def result(followup_id, event="res-1", **fields):
    values = {"satisfaction": 4, "agreement_fulfilled": True, "rebound": False} | fields
    return FollowupResult(event_id=event, followup_id=followup_id, dispute_id="D-2026-0002", at=ISSUED + timedelta(days=10), **values)


async def test_results_record_satisfaction_and_send_rebounds_back(followup):
    processor, clock, published = followup
    await processor.on_events(records(issued(), closed(), resolved()))
    clock.advance(timedelta(days=33))
    await processor.fire_due()
    first, second = dues(published)  # the 7-day and the 30-day revisit
    published.clear()
    await processor.on_results(records(
        result(first.followup_id, "res-ok", satisfaction=5),
        result(second.followup_id, "res-rebound", satisfaction=2, rebound=True),
        result(second.followup_id, "res-rebound", satisfaction=2, rebound=True),  # repeated
        result("fu-unknown", "res-x"),
        topic="followups.results",
    ))
    [request] = reassessments(published)
    assert (request.reason, request.history.rebounds, request.history.previous_level, request.caused_by) == ("rebound", 1, 2, "res-rebound")
    [dead] = [o for o in published if o.topic == "followups.results.invalid"]
    assert dead.header("dlq_reason").startswith("followup_id: unknown_followup")
    figures = await processor.store.figures(clock.now())
    assert (figures["results"], figures["satisfaction"], figures["flared_up"]) == (2, 3.5, 1)


FIRST_REVISIT = followup_id("D-2026-0002", "1", "revisit", "1")


def result_answers(published) -> list:
    """Return follow-up's answers to revisit results, each checked to be on its department's own due topic."""
    found = [(o.topic, FOLLOWUP_MESSAGE.validate_json(o.value)) for o in published if o.topic.endswith(".due") and o.topic != FOLLOWUPS_DUE]
    answers = [(topic, m) for topic, m in found if isinstance(m, ResultAnswered)]
    assert all(topic == due_topic(a.department) for topic, a in answers)
    return [a for _, a in answers]


def dead_reasons(published):
    """Return the labels of the results refused: answered refused on the department's due topic, or dead-lettered."""
    letters = [o.header("dlq_reason").split(":", 2)[1].strip() for o in published if o.topic == "followups.results.invalid"]
    return [a.refusal for a in result_answers(published) if a.outcome == "refused"] + letters


async def answer(processor, *batches):
    """Feed batches of revisit results to follow-up, one after the other."""
    for batch in batches:
        await processor.on_results(records(*batch, topic="followups.results"))


# (case, events before the result, days on the clock before it)
UNASKED = [
    ("pending: its day has not come", [issued(), closed(), resolved()], 5),
    ("cancelled: a new attempt called it off before it fired", [issued(), closed(), resolved(), issued(order="wo-2", attempt=2)], 10),
]


@pytest.mark.parametrize("case, events, days", UNASKED, ids=[row[0] for row in UNASKED])
async def test_a_result_of_a_revisit_not_made_is_refused_not_due(followup, case, events, days):
    processor, clock, published = followup
    await processor.on_events(records(*events))
    clock.advance(timedelta(days=days))
    await processor.fire_due()
    assert not any(d.followup_id == FIRST_REVISIT for d in dues(published))
    published.clear()  # the new attempt's own deadline alerts
    await answer(processor, [result(FIRST_REVISIT, "res-early", satisfaction=1, rebound=True)])
    assert dead_reasons(published) == ["not_due"]
    assert reassessments(published) == []
    assert (await processor.store.figures(clock.now()))["results"] == 0
    assert processor.metrics.invalid.labels("not_due")._value.get() == 1


# (case, batches of results for one fired revisit, dead-letter labels, event ids of the results recorded)
ANSWERS = [
    ("three different results, two in one batch, one later: the first counts",
     [[result(FIRST_REVISIT, "res-a", rebound=True), result(FIRST_REVISIT, "res-b", rebound=True)], [result(FIRST_REVISIT, "res-c", rebound=True)]],
     ["already_answered", "already_answered"], ["res-a"]),
    ("the counted result redelivered, in its batch and later, beside a forged one",
     [[result(FIRST_REVISIT, "res-a", rebound=True), result(FIRST_REVISIT, "res-a", rebound=True)],
      [result(FIRST_REVISIT, "res-a", rebound=True), result(FIRST_REVISIT, "res-forged", rebound=True)]],
     ["already_answered"], ["res-a"]),
    ("the counted result redelivered alone: a silent duplicate",
     [[result(FIRST_REVISIT, "res-a", rebound=True)], [result(FIRST_REVISIT, "res-a", rebound=True)]], [], ["res-a"]),
]


@pytest.mark.parametrize("case, batches, refused, recorded", ANSWERS, ids=[row[0] for row in ANSWERS])
async def test_a_fired_revisit_takes_one_result(followup, case, batches, refused, recorded):
    processor, clock, published = followup
    await processor.on_events(records(issued(), closed(), resolved()))
    clock.advance(timedelta(days=10))
    await processor.fire_due()
    await answer(processor, *batches)
    assert dead_reasons(published) == refused
    assert [(a.result_event_id, a.outcome, a.reassessed) for a in result_answers(published) if a.outcome == "accepted"] == [("res-a", "accepted", True)]
    assert [(r.reason, r.caused_by) for r in reassessments(published)] == [("rebound", "res-a")]
    assert await _recorded(processor.store.engine) == recorded
    assert processor.metrics.invalid.labels("already_answered")._value.get() == len(refused)


async def _recorded(engine) -> list[str]:
    async with engine.connect() as connection:
        return [row[0] for row in await connection.exec_driver_sql("SELECT event_id FROM followup_results ORDER BY event_id")]


# (case, the event id the second instance receives for the same revisit, its dead-letter labels)
RACES = [
    ("a different result", "res-b", ["already_answered"]),
    ("the same result, redelivered to another instance during a rebalance", "res-a", []),
]


@pytest.mark.parametrize("case, second, refused", RACES, ids=[row[0] for row in RACES])
async def test_two_instances_answering_one_revisit_at_once_count_one_result(empty_postgres_url, case, second, refused):
    engines = [create_engine(empty_postgres_url), create_engine(empty_postgres_url)]
    await FollowupStore(engines[0]).create()
    clock, published = ManualClock(ISSUED), Published()
    first, other = (processor_on(e, clock, published) for e in engines)
    await first.on_events(records(issued(), closed(), resolved()))
    clock.advance(timedelta(days=10))
    await first.fire_due()
    holding, other_done = asyncio.Event(), asyncio.Event()

    async def publish_slowly(outgoing):
        # The first batch holds its transaction open until the other has published, or half a second: the other
        # reads what was answered meanwhile, so without the revisit's lock both results would count.
        holding.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(other_done.wait(), 0.5)
        await published(outgoing)

    async def answer_once_the_first_holds():
        await holding.wait()
        await answer(other, [result(FIRST_REVISIT, second, rebound=True)])
        other_done.set()

    first.publish = publish_slowly
    try:
        await asyncio.gather(answer(first, [result(FIRST_REVISIT, "res-a", rebound=True)]), answer_once_the_first_holds())
        assert sorted(dead_reasons(published)) == refused
        assert len(reassessments(published)) == 1
        assert len(await _recorded(engines[0])) == 1
    finally:
        for engine in engines:
            await engine.dispose()


async def test_closure_figures_are_exact(followup):
    processor, clock, _ = followup
    await processor.on_events(records(
        issued("wo-1"), issued("wo-2", department="women_federation", role="support"), issued("wo-3", event="ev-x", dispute="D-other"),
        closed("wo-1"), closed("wo-2", "returned"), resolved(),
    ))
    clock.advance(timedelta(days=11))
    figures = await processor.store.figures(clock.now())
    assert figures["departments"] == {"mediation_room": (2, 1), "women_federation": (1, 0)}
    # The wage dispute had one failed mediation before it was resolved: not a first-time success.
    assert (figures["resolved"], figures["resolved_without_failure"], figures["overdue"]) == (1, 0, 1)
    processor.metrics.show(figures)
    assert processor.metrics.closure_rate.labels("mediation_room")._value.get() == 0.5


async def test_a_store_from_before_department_scoped_ids_is_rekeyed_on_start_and_keeps_its_results(followup):
    processor, clock, published = followup
    revisits = await first_revisits(processor, clock, published)
    engine = processor.store.engine
    async with engine.begin() as connection:  # the schema before: results keyed by event id, processed ids of 80 characters
        await connection.exec_driver_sql("DROP TABLE followup_results")
        await connection.exec_driver_sql(
            "CREATE TABLE followup_results (event_id VARCHAR(64) NOT NULL PRIMARY KEY, followup_id VARCHAR(64) NOT NULL, "
            "satisfaction INTEGER NOT NULL, flared_up BOOLEAN NOT NULL)"
        )
        await connection.exec_driver_sql(f"INSERT INTO followup_results VALUES ('res-same', '{revisits['mediation_room'].followup_id}', 4, false)")
        if connection.dialect.name == "postgresql":
            await connection.exec_driver_sql("ALTER TABLE followup_processed ALTER COLUMN event_id TYPE VARCHAR(80)")
        await processor.store.mark_processed(connection, ["result:res-same"], clock.now())
    await FollowupStore(engine).create()
    await FollowupStore(engine).create()  # and again, as every start does: nothing left to change
    async with engine.connect() as connection:
        key = await connection.run_sync(lambda sync: inspect(sync).get_pk_constraint("followup_results")["constrained_columns"])
    assert key == ["followup_id", "event_id"]
    # The court's own result with that event id counts beside the one kept; a 64-character id fits its scoped key.
    court = result(revisits["court"].followup_id, "res-same").model_copy(update={"dispute_id": "D-court"})
    longest = result(revisits["court"].followup_id, "r" * 64).model_copy(update={"dispute_id": "D-court"})
    await processor.on_results([Record(results_topic("court"), r.to_bytes(), offset=n) for n, r in enumerate((court, longest))])
    assert (await processor.store.figures(clock.now()))["results"] == 2


async def started_from(processor, earlier_schema):
    """Give the store's timers an earlier schema's indexes, set a timer, start the store again; return its index names."""
    engine = processor.store.engine
    async with engine.begin() as connection:
        for statement in earlier_schema:
            await connection.exec_driver_sql(statement)
    await processor.on_events(records(issued("wo-1")))
    await FollowupStore(engine).create()
    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: {i["name"] for i in inspect(sync).get_indexes("followup_timers")})


async def sqlite_plan(engine, query):
    """Return how SQLite would run a query (its plan's lines); None on another database."""
    async with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            return None
        sql = query if isinstance(query, str) else str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        return [row[-1] for row in (await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all()]


async def test_a_store_from_before_the_pending_timer_index_gets_it_on_start(followup):
    processor, _, _ = followup
    names = await started_from(processor, [  # the first schema: one index on state, one on due_at
        "DROP INDEX ix_followup_timers_state_due_at",
        "CREATE INDEX ix_followup_timers_state ON followup_timers (state)",
        "CREATE INDEX ix_followup_timers_due_at ON followup_timers (due_at)",
    ])
    claim = "SELECT * FROM followup_timers WHERE state = 'pending' AND due_at <= '2026-04-01' ORDER BY due_at LIMIT 500"
    assert await sqlite_plan(processor.store.engine, claim) in (
        None, ["SEARCH followup_timers USING INDEX ix_followup_timers_state_due_at (state=? AND due_at<?)"]
    )
    assert "ix_followup_timers_state_due_at" in names
    assert not names & {"ix_followup_timers_state", "ix_followup_timers_due_at"}
    assert await processor.next_due() == DUE - timedelta(days=2)  # the timers set before the upgrade are still there


async def test_a_store_from_before_the_timers_dispute_and_state_index_gets_it_on_start(followup):
    processor, _, _ = followup
    names = await started_from(processor, [  # the earlier schema: timers indexed by dispute alone
        "DROP INDEX ix_followup_timers_dispute_id_state",
        "CREATE INDEX ix_followup_timers_dispute_id ON followup_timers (dispute_id)",
    ])
    plan = await sqlite_plan(processor.store.engine, retained_page_query("", 500))
    assert plan is None or "SEARCH followup_timers USING INDEX ix_followup_timers_dispute_id_state (dispute_id=? AND state=?)" in plan
    assert "ix_followup_timers_dispute_id_state" in names and "ix_followup_timers_dispute_id" not in names
    async with processor.store.engine.connect() as connection:
        kept = await processor.store.retained_page(connection, "", 500)
    assert [(k.dispute_id, k.needed) for k in kept] == [(issued("wo-1").dispute_id, True)]  # its timers are pending


async def test_two_instances_on_postgres_never_fire_a_timer_twice(empty_postgres_url):
    engines = [create_engine(empty_postgres_url), create_engine(empty_postgres_url)]
    await FollowupStore(engines[0]).create()
    clock, published = ManualClock(ISSUED), Published()
    first, second = (processor_on(e, clock, published) for e in engines)
    await first.on_events(records(*[issued(f"wo-{n}", event=f"ev-{n}", dispute=f"D-{n % 40}") for n in range(400)]))
    clock.advance(timedelta(days=11))
    for _ in range(4):
        await asyncio.gather(first.fire_due(), second.fire_due())
    ids = [d.followup_id for d in dues(published)]
    assert len(ids) == 800 and len(set(ids)) == 800
    for engine in engines:
        await engine.dispose()


async def test_a_late_first_response_is_reported_but_does_not_regrade(followup):
    processor, clock, published = followup
    first = issued().model_copy(update={"first_response": True, "due_at": ISSUED + timedelta(hours=1)})
    await processor.on_events(records(first))
    clock.advance(timedelta(hours=2))
    await processor.fire_due()
    assert sorted(d.kind for d in dues(published)) == ["sla_breached", "sla_warning"]
    assert reassessments(published) == []


async def test_a_support_order_overdue_after_resolution_does_not_regrade(followup):
    processor, clock, published = followup
    support = issued("wo-2", department="women_federation", role="support", event="ev-support")
    await processor.on_events(records(issued(), support, closed(), resolved()))
    clock.advance(timedelta(days=11))
    await processor.fire_due()
    assert [(d.kind, d.work_order_id) for d in dues(published) if d.kind == "sla_breached"] == [("sla_breached", "wo-2")]
    assert reassessments(published) == []


async def test_the_timer_loop_is_woken_only_by_a_timer_due_before_it_would_look(followup):
    processor, clock, published = followup
    loop = asyncio.create_task(processor.run_timers())
    try:
        await processor.on_events(records(issued("wo-1")))
        first_warning = ISSUED + (DUE - ISSUED) * 0.8
        await wait_for(lambda: _planned(processor, first_warning), 10)

        await processor.on_events(records(issued("wo-2")))  # due at the same times: the plan stands
        assert not processor.wake.is_set() and processor.planned == first_warning

        sooner = issued("wo-3").model_copy(update={"due_at": ISSUED + timedelta(days=5)})
        await processor.on_events(records(sooner))
        await wait_for(lambda: _planned(processor, ISSUED + timedelta(days=4)), 10)
        clock.advance(timedelta(days=4))
        await wait_for(lambda: _fired(published, 1), 10)
        assert [d.work_order_id for d in dues(published)] == ["wo-3"]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def _planned(processor, moment) -> bool:
    return processor.planned == moment


async def _fired(published, count) -> bool:
    return len(dues(published)) >= count


async def test_a_shutdown_during_a_round_of_fires_lets_the_round_finish_and_record_them(followup):
    processor, clock, published = followup
    await processor.on_events(records(issued("wo-1"), issued("wo-2")))
    clock.advance(timedelta(days=30))  # every timer is due
    sending, release = asyncio.Event(), asyncio.Event()

    async def slow_publish(outgoing):
        sending.set()
        await release.wait()
        await published(outgoing)

    processor.publish = slow_publish
    loop = asyncio.create_task(processor.run_timers())
    await asyncio.wait_for(sending.wait(), 10)
    loop.cancel()  # SIGTERM while the fires are being published
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await loop
    fired = len(dues(published))
    assert fired == 4
    processor.publish = published
    assert await processor.fire_due() == 0, "recorded as fired: nothing fires again after a restart"
    assert len(dues(published)) == fired


async def test_closure_figures_are_counted_on_the_reader(tmp_path):
    # They scan every order, timer and result every two seconds: on the loop's SQLite connection the
    # stall grows with the tables and holds up follow-up's inputs and timers.
    url = f"sqlite+aiosqlite:///{tmp_path / 'followup.db'}"
    engine = create_engine(url)
    reader = create_reader(url, engine)
    statements = Counter()
    for name, counted in (("engine", engine), ("reader", reader)):
        event.listen(counted.sync_engine, "before_cursor_execute", lambda *_, name=name: statements.update([name]))
    try:
        store = FollowupStore(engine, reader)
        await store.create()
        statements.clear()
        figures = await store.figures(ISSUED)
        assert (figures["resolved"], figures["overdue"], figures["fired"]) == (0, 0, {})
        assert (statements["engine"], statements["reader"]) == (0, 5)
    finally:
        await reader.dispose()
        await engine.dispose()


async def test_a_result_on_another_department_s_topic_is_refused_and_leaves_the_event_id_free(followup):
    processor, clock, published = followup
    await processor.on_events(records(issued(), closed(), resolved()))
    clock.advance(timedelta(days=10))  # the 7-day revisit of a dispute resolved on day 2
    await processor.fire_due()
    [first] = dues(published)
    assert first.department == "mediation_room"
    published.clear()
    # A forged rebound on the court's own topic: the court may write it, but the revisit is the mediation room's.
    forged = result(first.followup_id, "res-same", satisfaction=1, rebound=True)
    await processor.on_results([Record(results_topic("court"), forged.to_bytes(), offset=1)])
    assert dead_reasons(published) == ["department_mismatch"] and not reassessments(published)
    assert processor.metrics.invalid.labels("department_mismatch")._value.get() == 1
    published.clear()
    # The mediation room's own answer with the same event id counts.
    await processor.on_results([Record(results_topic("mediation_room"), result(first.followup_id, "res-same").to_bytes(), offset=2)])
    assert not dead_reasons(published)
    assert (await processor.store.figures(clock.now()))["results"] == 1


def court_case():
    """Return the events of a second dispute, led and resolved by the court."""
    report = WAGE_REPORT.model_copy(update={"dispute_id": "D-court"})
    return [
        issued("wo-c", department="court", dispute="D-court"),
        DisputeResolved(event_id="ev-resolved-court", dispute_id="D-court", attempt=1, at=ISSUED + timedelta(days=2),
                        resolving_department="court", level=2, report=report),
    ]


async def first_revisits(processor, clock, published) -> dict[str, FollowupDue]:
    """Resolve the mediation room's dispute and the court's, fire their 7-day revisits; return them by department."""
    await processor.on_events(records(issued(), closed(), resolved(), *court_case()))
    clock.advance(timedelta(days=10))
    await processor.fire_due()
    revisits = {d: [r for r in dues(published, due_topic(d)) if r.kind == "revisit"] for d in ("mediation_room", "court")}
    published.clear()
    return {d: found for d, [found] in revisits.items()}


# (case, how the two departments' results with one event id arrive: a list of batches of (department, topic))
ONE_EVENT_ID = [
    ("in one batch, each on its own topic", [[("mediation_room", "own"), ("court", "own")]]),
    ("in two batches, each on its own topic", [[("mediation_room", "own")], [("court", "own")]]),
    ("on the shared development topic, scoped by each revisit's department", [[("mediation_room", "shared")], [("court", "shared")]]),
]


@pytest.mark.parametrize("case, batches", ONE_EVENT_ID, ids=[row[0] for row in ONE_EVENT_ID])
async def test_two_departments_answering_their_own_revisits_with_one_event_id_both_count(followup, case, batches):
    processor, clock, published = followup
    revisits = await first_revisits(processor, clock, published)
    for n, batch in enumerate(batches):
        await processor.on_results([
            Record(results_topic(d) if where == "own" else FOLLOWUPS_RESULTS,
                   result(revisits[d].followup_id, "res-same", rebound=True).model_copy(update={"dispute_id": revisits[d].dispute_id}).to_bytes(),
                   offset=10 * n + i)
            for i, (d, where) in enumerate(batch)
        ])
    assert not dead_reasons(published)
    assert sorted(r.dispute_id for r in reassessments(published)) == ["D-2026-0002", "D-court"]
    assert (await processor.store.figures(clock.now()))["results"] == 2


# (case, the topic the result comes on again): before the upgrade its processed id was the bare event id
LEGACY = [("on its department's own topic", results_topic("mediation_room")), ("on the shared development topic", FOLLOWUPS_RESULTS)]


@pytest.mark.parametrize("case, topic", LEGACY, ids=[row[0] for row in LEGACY])
async def test_a_result_processed_under_the_legacy_key_is_not_applied_again(followup, case, topic):
    processor, clock, published = followup
    revisits = await first_revisits(processor, clock, published)
    async with processor.store.engine.begin() as connection:
        await processor.store.mark_processed(connection, ["result:res-old"], clock.now())  # as written before the upgrade
    rebound = result(revisits["mediation_room"].followup_id, "res-old", rebound=True)
    await processor.on_results([Record(topic, rebound.to_bytes(), offset=1)])
    assert (published, (await processor.store.figures(clock.now()))["results"]) == ([], 0)
    # A new event id of the same department is no repeat.
    await processor.on_results([Record(topic, result(revisits["mediation_room"].followup_id, "res-new", rebound=True).to_bytes(), offset=2)])
    assert [r.caused_by for r in reassessments(published)] == ["res-new"]
