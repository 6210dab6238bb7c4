"""Contract tests: every model round-trips, and each invalid variant is rejected naming its field."""

import json

import pytest
from pydantic import ValidationError

from schemas.catalog import RESULTS_CHANNEL, UPDATES_CHANNEL, input_topics, sender_departments
from schemas.deadletters import rejection_reason
from schemas.followups import FOLLOWUPS_RESULTS, results_topic
from schemas.disputes import DisputeReported, DisputeTriaged
from schemas.workorders import (
    DEPARTMENTS,
    WORK_ORDER_EVENT,
    WORKORDERS_UPDATES,
    OrderIssued,
    WorkOrderUpdate,
    updates_topic,
    work_order_topic,
)
from tests.support.samples import ALL, ORDER_EVENTS, TRIAGED, UPDATE, report_payload


@pytest.mark.parametrize("event", ALL, ids=lambda e: type(e).__name__)
def test_every_contract_round_trips_through_json(event):
    assert type(event).model_validate_json(event.to_bytes()) == event
    assert event.to_bytes() == event.model_dump_json().encode()  # the wire form is pydantic's JSON, byte for byte


@pytest.mark.parametrize("event", ORDER_EVENTS, ids=lambda e: e.kind)
def test_work_order_events_are_told_apart_by_kind(event):
    assert WORK_ORDER_EVENT.validate_json(event.to_bytes()) == event


@pytest.mark.parametrize("event", [e for e in ALL if "report" in type(e).model_fields], ids=lambda e: type(e).__name__)
def test_an_event_serialised_with_its_report_already_encoded_is_the_same_bytes(event):
    fields = list(type(event).model_fields)
    if fields[-1] != "report":
        with pytest.raises(ValueError, match="not the last field"):
            event.to_bytes_with("report", event.report.to_bytes())
        return
    assert event.to_bytes_with("report", event.report.to_bytes()) == event.model_dump_json().encode()


def test_reassessment_grades_the_original_report_with_the_updated_history():
    from tests.support.samples import REASSESS

    graded = REASSESS.updated_report()
    assert graded.history.failed_mediations == 2
    assert graded.description == REASSESS.report.description


def _without(key):
    payload = report_payload()
    del payload[key]
    return payload


# (case, payload, field named in the reason, words in the reason)
INVALID_REPORTS = [
    ("naive timestamp", report_payload(reported_at="2026-03-02T09:30:00"), "reported_at", "timezone"),
    ("unix timestamp", report_payload(reported_at=1772415000), "reported_at", "datetime"),
    ("space for the T", report_payload(reported_at="2026-03-02 09:30:00+08:00"), "reported_at", "RFC 3339"),
    ("offset without colon", report_payload(reported_at="2026-03-02T09:30:00+0800"), "reported_at", "RFC 3339"),
    ("30 February", report_payload(reported_at="2026-02-30T09:30:00+08:00"), "reported_at", "day value is outside"),
    ("dispute id ending in a newline", report_payload(dispute_id="D-1\n"), "dispute_id", "pattern"),
    ("unknown category", report_payload(category="gambling"), "category", "Input should be"),
    ("5,001-char description", report_payload(description="吵" * 5001), "description", "at most 5000"),
    ("empty description", report_payload(description=""), "description", "at least 1"),
    ("0 parties", report_payload(parties=[]), "parties", "at least 1"),
    ("201 parties", report_payload(parties=[report_payload()["parties"][0]] * 201), "parties", "at most 200"),
    ("extra field", report_payload(priority="high"), "(unknown field)", "Extra inputs"),
    ("extra nested field", report_payload(risk={"arson": True}), "risk.(unknown field)", "Extra inputs"),
    ("party_count as string", report_payload(party_count="2"), "party_count", "valid integer"),
    ("party_count zero", report_payload(party_count=0), "party_count", "greater than or equal to 1"),
    ("flag as string", report_payload(risk={"violence_threat": "yes"}), "risk.violence_threat", "valid boolean"),
    ("negative amount", report_payload(amount_cny=-1), "amount_cny", "greater than or equal to 0"),
    ("unknown source", report_payload(source="weibo"), "source", "Input should be"),
    ("bad dispute id", report_payload(dispute_id="D 1/2"), "dispute_id", "pattern"),
    ("65-char event id", report_payload(event_id="e" * 65), "event_id", "at most 64"),
    ("missing event id", _without("event_id"), "event_id", "Field required"),
    ("unknown vulnerability", report_payload(parties=[{"role": "complainant", "kind": "person", "name": "王某", "vulnerable": ["rich"]}]), "parties.0.vulnerable.0", "Input should be"),
    ("unknown party role", report_payload(parties=[{"role": "witness", "kind": "person", "name": "王某"}]), "parties.0.role", "Input should be"),
    ("negative history", report_payload(history={"failed_mediations": -1}), "history.failed_mediations", "greater than or equal to 0"),
    ("previous level 4", report_payload(history={"previous_level": 4}), "history.previous_level", "Input should be"),
]


@pytest.mark.parametrize("case, payload, field, words", INVALID_REPORTS, ids=[c[0] for c in INVALID_REPORTS])
def test_invalid_reports_are_rejected_naming_the_field(case, payload, field, words):
    with pytest.raises(ValidationError) as caught:
        DisputeReported.model_validate_json(json.dumps(payload))
    reason = rejection_reason(caught.value)
    assert reason.startswith(f"{field}: "), reason
    assert words in reason


def test_nan_amount_is_rejected():
    raw = json.dumps(report_payload()).replace('"party_count": 2', '"party_count": 2, "amount_cny": NaN')
    with pytest.raises(ValidationError) as caught:
        DisputeReported.model_validate_json(raw)
    assert rejection_reason(caught.value) == "amount_cny: Input should be a finite number"


def test_rejection_reason_never_echoes_personal_data():
    payload = report_payload(parties=[{"role": "complainant", "kind": "person", "name": "王某", "phone": "138-abc-0000"}])
    with pytest.raises(ValidationError) as caught:
        DisputeReported.model_validate_json(json.dumps(payload))
    reason = rejection_reason(caught.value)
    assert reason.startswith("parties.0.phone: ")
    assert "138" not in reason and "王某" not in reason


def test_rejection_reason_never_echoes_a_bad_event_kind():
    payload = json.loads(ORDER_EVENTS[0].to_bytes()) | {"kind": "王某 13912345678"}
    with pytest.raises(ValidationError) as caught:
        WORK_ORDER_EVENT.validate_json(json.dumps(payload))
    reason = rejection_reason(caught.value)
    assert reason.startswith("(message): tag not one of ") and "issued" in reason
    assert "王某" not in reason and "13912345678" not in reason


def test_rejection_reason_caps_a_flood_of_errors():
    payload = {"parties": [{"bad": i} for i in range(50)]}
    with pytest.raises(ValidationError) as caught:
        DisputeReported.model_validate(payload)
    assert caught.value.error_count() > 5
    assert rejection_reason(caught.value).endswith("more)")


def test_triaged_tier_must_match_level():
    with pytest.raises(ValidationError, match="tier must be on_site for level 1"):
        DisputeTriaged.model_validate(TRIAGED.model_dump() | {"level": 1})


def test_update_note_is_limited():
    with pytest.raises(ValidationError) as caught:
        WorkOrderUpdate.model_validate(UPDATE.model_dump() | {"note": "x" * 2001})
    assert rejection_reason(caught.value).startswith("note: ")


def test_work_order_event_with_unknown_kind_is_rejected():
    raw = ORDER_EVENTS[0].model_dump(mode="json") | {"kind": "deleted"}
    with pytest.raises(ValidationError) as caught:
        WORK_ORDER_EVENT.validate_json(json.dumps(raw))
    assert rejection_reason(caught.value).startswith("(message): tag not one of ")


def test_models_are_frozen():
    with pytest.raises(ValidationError):
        TRIAGED.level = 1


# (topic function, a department, its topic): a department reads one topic and writes two, each its own.
DEPARTMENT_TOPICS = [
    (work_order_topic, "women_federation", "workorders.women_federation"),
    (updates_topic, "women_federation", "workorders.women_federation.updates"),
    (results_topic, "women_federation", "followups.women_federation.results"),
]


@pytest.mark.parametrize("topic_of, department, topic", DEPARTMENT_TOPICS, ids=[row[0].__name__ for row in DEPARTMENT_TOPICS])
def test_each_department_has_its_own_topics(topic_of, department, topic):
    assert topic_of(department) == topic
    with pytest.raises(ValueError, match="unknown department"):
        topic_of("army")


# (channel, environment, topics subscribed beyond the twenty departments' own)
SUBSCRIPTIONS = [
    (UPDATES_CHANNEL, "development", {WORKORDERS_UPDATES}),
    (UPDATES_CHANNEL, "production", set()),
    (RESULTS_CHANNEL, "development", {FOLLOWUPS_RESULTS}),
    (RESULTS_CHANNEL, "production", set()),
]


@pytest.mark.parametrize("channel, environment, shared", SUBSCRIPTIONS)
def test_the_shared_department_topics_are_read_only_in_development(channel, environment, shared):
    topics = input_topics(channel, environment)
    own = sender_departments(channel)
    assert sorted(own.values()) == sorted(DEPARTMENTS) and set(topics) == set(own) | shared
    assert all(own[topic] in topic for topic in own), "each topic names its department"


def test_issued_event_needs_the_report():
    raw = ORDER_EVENTS[0].model_dump(mode="json")
    del raw["report"]
    with pytest.raises(ValidationError) as caught:
        OrderIssued.model_validate_json(json.dumps(raw))
    assert rejection_reason(caught.value) == "report: Field required"
