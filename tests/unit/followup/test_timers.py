"""The pure decisions of follow-up, one table each: what events set and cancel, what a round of due timers does, which results count."""

from dataclasses import replace
from datetime import timedelta

import pytest

from schemas.followups import FollowupResult
from schemas.workorders import DisputeResolved, OrderEscalated, OrderStatusChanged
from services.dispatch.disclosure import DEFAULT_DISCLOSURE, load_disclosure, parse_disclosure
from services.followup.timers import REFUSALS as REFUSALS_BY_LABEL
from services.followup.timers import (
    Dispute,
    DueContext,
    EventEffects,
    Round,
    Timer,
    due_message,
    due_records,
    event_effects,
    fire_round,
    followup_id,
    judge_results,
    legacy_result_key,
    refusal,
    result_department,
    result_key,
    revisit_timers,
    sender_refusal,
    sla_timers,
    split_senders,
)
from services.runtime.retention import erased_report
from tests.support.samples import DUE_AT as DUE
from tests.support.samples import ISSUED_AT as ISSUED
from tests.support.samples import WAGE_REPORT
from tests.support.samples import order_issued as issued

DISPUTE = "D-2026-0002"
WARN = ISSUED + (DUE - ISSUED) * 0.8
NOW = DUE + timedelta(hours=1)
POLICY = load_disclosure(DEFAULT_DISCLOSURE)


def status(order="wo-1", to="resolved", attempt=1):
    return OrderStatusChanged(
        event_id=f"ev-{order}-{to}", dispute_id=DISPUTE, attempt=attempt, at=ISSUED + timedelta(days=1), work_order_id=order,
        department="mediation_room", role="lead", previous_status="in_progress", status=to,
    )


def resolved(attempt=1):
    return DisputeResolved(
        event_id=f"ev-resolved-{attempt}", dispute_id=DISPUTE, attempt=attempt, at=ISSUED + timedelta(days=2),
        resolving_department="mediation_room", level=2, report=WAGE_REPORT,
    )


def escalated():
    return OrderEscalated(
        event_id="ev-esc", dispute_id=DISPUTE, attempt=1, at=ISSUED, work_order_id="wo-1", department="mediation_room",
        reason="returned", to="governance_centre",
    )


def effects_in_short(effects: EventEffects) -> dict:
    """What a reader checks of a batch's effects: which rows, which timers (kind, order or revisit number, due), which cancellations."""
    return {
        "orders": [(o.work_order_id, o.attempt) for o in effects.orders],
        "disputes": [(d.dispute_id, d.attempt) for d in effects.disputes],
        "timers": [(t.kind, t.work_order_id or t.revisit_number, t.due_at) for t in effects.timers],
        "closing": effects.closing,
        "resolutions": [(r.dispute_id, r.attempt, r.department, r.failed_mediations) for r in effects.resolutions],
        "superseded_revisits": effects.superseded_revisits,
    }


NOTHING = {"orders": [], "disputes": [], "timers": [], "closing": {}, "resolutions": [], "superseded_revisits": {}}
SLA_TIMERS = [("sla_warning", "wo-1", WARN), ("sla_breached", "wo-1", DUE)]

# (case, events of one batch, attempts the store remembers, effects in short)
EVENT_BATCHES = [
    ("an issued order is tracked, warned at 80 % and breached at its deadline", [issued()], {},
     NOTHING | {"orders": [("wo-1", 1)], "disputes": [(DISPUTE, 1)], "timers": SLA_TIMERS}),
    ("an order issued again keeps the dispute remembered at the same attempt", [issued()], {DISPUTE: 1},
     NOTHING | {"orders": [("wo-1", 1)], "disputes": [(DISPUTE, 1)], "timers": SLA_TIMERS}),
    ("an older attempt arriving late does not overwrite the newer one", [issued()], {DISPUTE: 2},
     NOTHING | {"orders": [("wo-1", 1)], "timers": SLA_TIMERS}),
    ("a new attempt is remembered and supersedes earlier revisits", [issued("wo-2", attempt=2)], {DISPUTE: 1},
     NOTHING | {"orders": [("wo-2", 2)], "disputes": [(DISPUTE, 2)], "timers": [("sla_warning", "wo-2", WARN), ("sla_breached", "wo-2", DUE)],
                "superseded_revisits": {DISPUTE: 2}}),
    ("of two attempts in one batch the newest is remembered", [issued("wo-2", attempt=2), issued()], {},
     NOTHING | {"orders": [("wo-2", 2), ("wo-1", 1)], "disputes": [(DISPUTE, 2)],
                "timers": [("sla_warning", "wo-2", WARN), ("sla_breached", "wo-2", DUE), *SLA_TIMERS], "superseded_revisits": {DISPUTE: 2}}),
    ("a resolved order is recorded resolved", [status(to="resolved")], {}, NOTHING | {"closing": {"wo-1": "resolved"}}),
    ("a failed mediation closes the order", [status(to="mediation_failed")], {}, NOTHING | {"closing": {"wo-1": "closed"}}),
    ("a returned order is closed", [status(to="returned")], {}, NOTHING | {"closing": {"wo-1": "closed"}}),
    ("a superseded order is closed", [status(to="superseded")], {}, NOTHING | {"closing": {"wo-1": "closed"}}),
    ("an accepted order is still open", [status(to="accepted")], {}, NOTHING),
    ("an order issued and resolved in one batch is tracked, then closed", [issued(), status()], {},
     NOTHING | {"orders": [("wo-1", 1)], "disputes": [(DISPUTE, 1)], "timers": SLA_TIMERS, "closing": {"wo-1": "resolved"}}),
    ("a resolved dispute is counted and revisited after 7 and 30 days", [resolved()], {},
     NOTHING | {"timers": [("revisit", 1, ISSUED + timedelta(days=9)), ("revisit", 2, ISSUED + timedelta(days=32))],
                "resolutions": [(DISPUTE, 1, "mediation_room", 1)]}),
    ("an escalation sets and cancels nothing", [escalated()], {}, NOTHING),
]


@pytest.mark.parametrize("case, events, known, expected", EVENT_BATCHES, ids=[row[0] for row in EVENT_BATCHES])
def test_events_become_the_effects_to_write(case, events, known, expected):
    assert effects_in_short(event_effects(events, known, 0.8, [7, 30])) == expected


FIRST_RESPONSE = issued("wo-fr").model_copy(update={"first_response": True})
WARNING, BREACH = sla_timers(issued(), 0.8)
SUPPORT_BREACH = sla_timers(issued("wo-2", role="support", department="women_federation"), 0.8)[1]
LATE_FIRST_RESPONSE = sla_timers(FIRST_RESPONSE, 0.8)[1]
REVISIT = revisit_timers(DISPUTE, 1, "mediation_room", ISSUED, [7])[0]
KNOWN = {DISPUTE: Dispute(DISPUTE, 1, 2, WAGE_REPORT)}


def context(open_orders=("wo-1", "wo-2", "wo-fr"), disputes=KNOWN, regraded=(), resolved=()) -> DueContext:
    return DueContext(set(open_orders), disputes, set(regraded), set(resolved))


def round_in_short(decided: Round) -> dict:
    """What a reader checks of a round: what fired and what it said, what was cancelled, which attempts re-graded and why."""
    return {
        "fired": [t.followup_id for t in decided.fired],
        "said": [(d.kind, d.department, d.work_order_id, len(d.parties)) for d in decided.dues],
        "cancelled": decided.cancelled,
        "regraded": decided.regraded,
        "reassessments": [(r.reason, r.caused_by, r.history.sla_breaches, r.history.previous_level) for r in decided.reassessments],
    }


QUIET = {"fired": [], "said": [], "cancelled": [], "regraded": [], "reassessments": []}

# (case, due timers, what the store knows, the round in short)
ROUNDS = [
    ("an open order's warning goes to its department", [WARNING], context(),
     QUIET | {"fired": [WARNING.followup_id], "said": [("sla_warning", "mediation_room", "wo-1", 0)]}),
    ("an open order's breach goes to the governance centre and re-grades its attempt", [BREACH], context(),
     QUIET | {"fired": [BREACH.followup_id], "said": [("sla_breached", "governance_centre", "wo-1", 0)], "regraded": [(DISPUTE, 1)],
              "reassessments": [("sla_breached", BREACH.followup_id, 1, 2)]}),
    ("an order closed in time is cancelled silently", [WARNING, BREACH], context(open_orders=()),
     QUIET | {"cancelled": [WARNING.followup_id, BREACH.followup_id]}),
    ("a timer of an unknown dispute is cancelled", [BREACH], context(disputes={}), QUIET | {"cancelled": [BREACH.followup_id]}),
    ("two breaches of one attempt re-grade it once", [BREACH, SUPPORT_BREACH], context(),
     QUIET | {"fired": [BREACH.followup_id, SUPPORT_BREACH.followup_id],
              "said": [("sla_breached", "governance_centre", "wo-1", 0), ("sla_breached", "governance_centre", "wo-2", 0)],
              "regraded": [(DISPUTE, 1)], "reassessments": [("sla_breached", BREACH.followup_id, 1, 2)]}),
    ("an attempt a breach re-graded before is not re-graded again", [SUPPORT_BREACH], context(regraded=[(DISPUTE, 1)]),
     QUIET | {"fired": [SUPPORT_BREACH.followup_id], "said": [("sla_breached", "governance_centre", "wo-2", 0)]}),
    ("a support order overdue after its attempt was resolved is reported but re-grades nothing", [SUPPORT_BREACH], context(resolved=[(DISPUTE, 1)]),
     QUIET | {"fired": [SUPPORT_BREACH.followup_id], "said": [("sla_breached", "governance_centre", "wo-2", 0)]}),
    ("a late first response is reported but re-grades nothing", [LATE_FIRST_RESPONSE], context(),
     QUIET | {"fired": [LATE_FIRST_RESPONSE.followup_id], "said": [("sla_breached", "governance_centre", "wo-fr", 0)]}),
    ("a revisit carries the parties' contact details", [REVISIT], context(),
     QUIET | {"fired": [REVISIT.followup_id], "said": [("revisit", "mediation_room", None, len(WAGE_REPORT.parties))]}),
]


@pytest.mark.parametrize("case, due, known, expected", ROUNDS, ids=[row[0] for row in ROUNDS])
def test_a_round_of_due_timers_fires_cancels_and_regrades(case, due, known, expected):
    assert round_in_short(fire_round(due, known, NOW, POLICY)) == expected


WITH_ID = WAGE_REPORT.model_copy(update={"parties": [WAGE_REPORT.parties[0].model_copy(update={"id_number": "330681195001011234", "age": 76}),
                                                     WAGE_REPORT.parties[1]]})
TERSE = parse_disclosure(DEFAULT_DISCLOSURE.read_text(encoding="utf-8").replace('version: "2026.12.1"', 'version: "terse"').replace(
    "revisit: {name: full, phone: full, id_number: withheld, age: full,", "revisit: {name: masked, phone: masked, id_number: withheld, age: withheld,"))


# (case, timer, policy) → (phone, name, id_number, age) of the person as the due record carries them, and the version named
@pytest.mark.parametrize(("timer", "policy", "person", "version"), [
    (REVISIT, POLICY, ("13900000002", "张某", None, 76), "2026.12.1"),
    (REVISIT, TERSE, ("139****0002", "张**", None, None), "terse"),
    (BREACH, POLICY, None, None),
], ids=["a revisit by the default policy", "a revisit by a terser policy", "a deadline alert carries nobody"])
def test_a_due_record_carries_the_parties_as_the_revisit_team_may_see_them(timer, policy, person, version):
    said = due_message(timer, WITH_ID, NOW, policy)
    assert said.disclosure == version
    assert [(p.phone, p.name, p.id_number, p.age) for p in said.parties if p.kind == "person"] == ([person] if person else [])


def test_a_round_says_when_each_timer_was_due_and_fired():
    [said] = fire_round([BREACH], context(), NOW, POLICY).dues
    assert (said.followup_id, said.due_at, said.fired_at) == (BREACH.followup_id, DUE, NOW)


SUPPORT_WARNING = sla_timers(issued("wo-2", role="support", department="women_federation"), 0.8)[0]

# (case, due timer) → the department whose own due topic gets it whole: the order's, the governance centre, the revisit's lead.
ADDRESSES = [
    ("a warning to the order's department", WARNING, "followups.mediation_room.due"),
    ("a support order's warning to the supporting department", SUPPORT_WARNING, "followups.women_federation.due"),
    ("a breach to the governance centre", BREACH, "followups.governance_centre.due"),
    ("a revisit to the resolving lead department", REVISIT, "followups.mediation_room.due"),
]


@pytest.mark.parametrize(("timer", "own_topic"), [row[1:] for row in ADDRESSES], ids=[row[0] for row in ADDRESSES])
def test_each_due_goes_whole_to_its_department_and_without_parties_to_the_shared_feed(timer, own_topic):
    said = due_message(timer, WITH_ID, NOW, POLICY)
    [(mine, whole), (shared, stripped)] = due_records(said)
    assert (mine, whole) == (own_topic, said)
    assert shared == "followups.due" and stripped.parties == [] and stripped.disclosure is None
    # All else as the department's record says it: the operators count, chart and follow up by id.
    assert stripped.model_dump(exclude={"parties", "disclosure"}) == said.model_dump(exclude={"parties", "disclosure"})
    assert b"13900000002" not in stripped.to_bytes() and "张某".encode() not in stripped.to_bytes()


def test_a_round_decided_again_says_the_same_bytes_on_both_topics():
    # A re-fired timer (a crash between publishing and recording) is decided from the same rows: same records, byte for byte.
    first, again = (fire_round([REVISIT, WARNING], context(), NOW, POLICY) for _ in range(2))
    records = [[(topic, d.to_bytes()) for due in decided.dues for topic, d in due_records(due)] for decided in (first, again)]
    assert records[0] == records[1] and len(records[0]) == 4


def result(followup=REVISIT.followup_id, event="res-1", dispute=DISPUTE, **fields):
    values = {"satisfaction": 4, "agreement_fulfilled": True, "rebound": False} | fields
    return FollowupResult(event_id=event, followup_id=followup, dispute_id=dispute, at=NOW, **values)


# Revisits as the store hands them back: the first fired, the second not yet due, the third cancelled by a new attempt.
ASKED, NOT_YET, CALLED_OFF = (
    replace(t, state=state) for t, state in zip(revisit_timers(DISPUTE, 1, "mediation_room", ISSUED, [7, 30, 60]), ("fired", "pending", "cancelled"))
)
TIMERS = {t.followup_id: t for t in (ASKED, NOT_YET, CALLED_OFF, replace(BREACH, state="fired"))}
ANSWERED = {ASKED.followup_id: "res-before"}

# (case, result, revisits answered before: revisit → event id, the label and dead-letter reason of its refusal, or None when it counts)
REFUSALS = [
    ("a result of a fired revisit counts", result(), {}, None),
    ("a result of no timer", result(followup="fu-unknown"), {}, ("unknown_followup", "followup_id: unknown_followup: no timer has this id")),
    ("a result of another dispute's revisit", result(dispute="D-other"), {},
     ("dispute_mismatch", "dispute_id: dispute_mismatch: not the dispute of this follow-up")),
    ("a result of a deadline", result(followup=BREACH.followup_id), {},
     ("not_a_revisit", "followup_id: not_a_revisit: only revisits take results")),
    ("a result of a revisit not yet due", result(followup=NOT_YET.followup_id), {},
     ("not_due", "followup_id: not_due: this revisit has not come due (pending or cancelled)")),
    ("a result of a cancelled revisit", result(followup=CALLED_OFF.followup_id), {},
     ("not_due", "followup_id: not_due: this revisit has not come due (pending or cancelled)")),
    ("a second result of a revisit", result(), ANSWERED,
     ("already_answered", "followup_id: already_answered: another result for this revisit counted")),
    ("an answered revisit's result of another dispute says so first", result(dispute="D-other"), ANSWERED,
     ("dispute_mismatch", "dispute_id: dispute_mismatch: not the dispute of this follow-up")),
]


@pytest.mark.parametrize("case, sent, answered, expected", REFUSALS, ids=[row[0] for row in REFUSALS])
def test_only_the_first_result_of_that_dispute_s_fired_revisit_counts(case, sent, answered, expected):
    refused = refusal(sent, TIMERS.get(sent.followup_id), answered)
    assert (refused and (refused.label, refused.reason)) == expected


# (case, results of one batch, revisits answered before it, results recorded, (input, label) refused, reassessment reasons)
RESULT_BATCHES = [
    ("all is well: recorded, nothing re-graded", [result()], {}, ["res-1"], [], []),
    ("a rebound goes back to triage", [result(rebound=True, satisfaction=1)], {}, ["res-1"], [], ["rebound"]),
    ("a broken agreement goes back to triage", [result(agreement_fulfilled=False)], {}, ["res-1"], [], ["agreement_unfulfilled"]),
    ("a refused result is neither recorded nor re-graded", [result(followup="fu-x", rebound=True)], {}, [], [("record-0", "unknown_followup")], []),
    ("counted and refused results side by side", [result(event="res-a"), result(event="res-b", followup=BREACH.followup_id)], {},
     ["res-a"], [("record-1", "not_a_revisit")], []),
    ("an early rebound re-grades nothing", [result(followup=NOT_YET.followup_id, rebound=True)], {}, [], [("record-0", "not_due")], []),
    ("of three rebounds for one revisit the first counts", [result(event=f"res-{n}", rebound=True) for n in "abc"], {},
     ["res-a"], [("record-1", "already_answered"), ("record-2", "already_answered")], ["rebound"]),
    ("a rebound after the revisit was answered re-grades nothing", [result(event="res-late", rebound=True)], ANSWERED,
     [], [("record-0", "already_answered")], []),
    ("the result that counted, delivered again, is dropped silently", [result(event="res-before", rebound=True)], ANSWERED, [], [], []),
]


@pytest.mark.parametrize("case, sent, answered, recorded, refused, reasons", RESULT_BATCHES, ids=[row[0] for row in RESULT_BATCHES])
def test_results_are_recorded_refused_or_sent_back(case, sent, answered, recorded, refused, reasons):
    judged = judge_results([(f"record-{n}", r) for n, r in enumerate(sent)], TIMERS, answered, KNOWN, NOW)
    assert [r.event_id for r in judged.recorded] == recorded
    assert [(record, why.label) for record, why in judged.refused] == refused
    assert [r.reason for r in judged.reassessments] == reasons


ERASED = {DISPUTE: Dispute(DISPUTE, 1, 2, erased_report(WAGE_REPORT), erased=True)}
# (case, results of one batch for a dispute whose personal data was erased, answered before, recorded, (input, label) refused)
AFTER_ERASURE = [
    ("a late result of a fired revisit is expired and re-grades nothing", [result(rebound=True)], {}, [], [("record-0", "expired")]),
    ("a second result is refused as answered first", [result(event="res-late")], ANSWERED, [], [("record-0", "already_answered")]),
    ("the result that counted, delivered again, is dropped silently", [result(event="res-before")], ANSWERED, [], []),
    ("a result of no timer is unknown, erased or not", [result(followup="fu-x")], {}, [], [("record-0", "unknown_followup")]),
]


@pytest.mark.parametrize("case, sent, answered, recorded, refused", AFTER_ERASURE, ids=[row[0] for row in AFTER_ERASURE])
def test_results_after_erasure_never_reach_triage(case, sent, answered, recorded, refused):
    judged = judge_results([(f"record-{n}", r) for n, r in enumerate(sent)], TIMERS, answered, ERASED, NOW)
    assert ([r.event_id for r in judged.recorded], [(record, why.label) for record, why in judged.refused]) == (recorded, refused)
    assert judged.reassessments == []
    assert REFUSALS_BY_LABEL["expired"].reason == "followup_id: expired: this revisit's dispute was erased after its retention"


def test_a_rebound_is_graded_from_the_remembered_level_one_rebound_more():
    [request] = judge_results([(None, result(rebound=True))], TIMERS, {}, KNOWN, NOW).reassessments
    assert (request.history.rebounds, request.history.previous_level, request.caused_by) == (WAGE_REPORT.history.rebounds + 1, 2, "res-1")
    assert request.event_id == f"rea-{followup_id('res-1')[3:]}"


def test_timer_ids_are_derived_from_what_they_are_about():
    assert [t.followup_id for t in sla_timers(issued(), 0.8)] == [followup_id("wo-1", "sla_warning"), followup_id("wo-1", "sla_breached")]
    assert isinstance(REVISIT, Timer) and REVISIT.followup_id == followup_id(DISPUTE, "1", "revisit", "1")


IMPOSTOR = ("department_mismatch", "department: department_mismatch: the topic it came on is not this revisit's department's")

# (case, the result's revisit, the department whose topic it came on (None: the shared development topic), refusal or None)
SENDERS = [
    ("the revisit's department answers on its own topic", ASKED.followup_id, "mediation_room", None),
    ("another department answers for it", ASKED.followup_id, "community_police", IMPOSTOR),
    ("on the shared development topic, the sender is not known", ASKED.followup_id, None, None),
    ("a deadline's department is checked too", BREACH.followup_id, "community_police", IMPOSTOR),
    ("a result of no timer is left to the other checks", "fu-unknown", "community_police", None),
]


@pytest.mark.parametrize("case, followup, sender, expected", SENDERS, ids=[row[0] for row in SENDERS])
def test_only_the_revisit_s_department_may_answer_it(case, followup, sender, expected):
    refused = sender_refusal(TIMERS.get(followup), sender)
    assert (refused and (refused.label, refused.reason)) == expected


def test_impostors_are_split_off_before_the_results_are_judged():
    sent = [("mine", result(event="res-a")), ("theirs", result(event="res-a")), ("shared", result(event="res-b"))]
    senders = {"mine": "mediation_room", "theirs": "court", "shared": None}
    trusted, impostors = split_senders(sent, TIMERS, senders.get)
    assert [source for source, _ in trusted] == ["mine", "shared"]
    assert [(source, why.label) for source, why in impostors] == [("theirs", "department_mismatch")]


# (case, the department whose topic the result came on (None: the shared development topic), its revisit) → whose event id it is
RESULT_SCOPES = [
    ("its own topic names the department", "mediation_room", ASKED, "result:mediation_room:res-1"),
    ("the shared topic: the revisit's department", None, ASKED, "result:mediation_room:res-1"),
    ("another department's topic still names that one (refused as an impostor before)", "court", ASKED, "result:court:res-1"),
    ("the shared topic and no known revisit: the unscoped key", None, None, "result:res-1"),
]


@pytest.mark.parametrize(("sender", "timer", "key"), [row[1:] for row in RESULT_SCOPES], ids=[row[0] for row in RESULT_SCOPES])
def test_a_result_s_processed_id_is_scoped_by_its_department(sender, timer, key):
    assert result_key(result_department(sender, timer), "res-1") == key
    assert legacy_result_key("res-1") == "result:res-1"


def test_two_departments_one_event_id_are_two_results():
    assert result_key("mediation_room", "res-1") != result_key("court", "res-1")
