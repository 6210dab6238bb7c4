"""One corpus of good and hostile records through the committed JSON Schemas and through the models: one verdict each.

A record is taken by the schema side when it is I-JSON (RFC 7493: UTF-8, no NaN or Infinity, no lone surrogate)
and valid against the committed schema with format assertion on; by the model side when the service's own parse
(`model_validate_json`, or the audit trail's adapter) takes it.
"""

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import TypeAdapter, ValidationError

from schemas.catalog import CONTRACTS
from schemas.generate import JSON_DIR, JSON_SCHEMA_DIALECT
from tests.support.hostile import agreement_cases, report_cases
from tests.support.samples import ANSWER, CANCELLATION, DUE, RESULT_ANSWER, NOTICE, ORDER, ORDER_EVENTS, REASSESS, RESULT, TRIAGED, UPDATE, report_payload


def _payload(event: Any) -> dict:
    return json.loads(event.to_bytes())


# (contract, a valid payload, a number field, a timestamp field, a bounded text field): every contract on the wire.
CONTRACT_SAMPLES = [
    ("DisputeReported", report_payload(), "party_count", "reported_at", "description"),
    ("ReassessmentRequested", _payload(REASSESS), "history", "requested_at", "caused_by"),  # no top-level integer
    ("DisputeTriaged", _payload(TRIAGED), "level", "triaged_at", "ruleset_version"),
    ("WorkOrderIssued", _payload(ORDER), "attempt", "due_at", "instructions"),
    ("CaseNotice", _payload(NOTICE), "notice", "reported_at", "description"),  # no integer: an enum stands in
    ("DepartmentMessage", _payload(ORDER), "attempt", "due_at", "instructions"),
    ("DepartmentMessage", _payload(NOTICE), "role", "at", "description"),
    ("UpdateAnswered", _payload(ANSWER), "outcome", "at", "reason"),  # no integer: an enum stands in
    ("OrderCancelled", _payload(CANCELLATION), "next_attempt", "at", "replaced_by"),
    ("DepartmentMessage", _payload(ANSWER), "order_status", "at", "reason"),
    ("DepartmentMessage", _payload(CANCELLATION), "level", "at", "replaced_by"),
    ("WorkOrderUpdate", _payload(UPDATE), "status", "at", "note"),  # no integer: an enum stands in
    *[("WorkOrderEvent", _payload(e), "attempt", "at", "event_id") for e in ORDER_EVENTS],
    ("FollowupDue", _payload(DUE), "revisit_number", "fired_at", "followup_id"),
    ("FollowupResult", _payload(RESULT), "satisfaction", "at", "note"),
    ("ResultAnswered", _payload(RESULT_ANSWER), "outcome", "at", "reason"),  # no integer: an enum stands in
    ("FollowupMessage", _payload(DUE), "revisit_number", "fired_at", "followup_id"),
    ("FollowupMessage", _payload(RESULT_ANSWER), "refusal", "at", "reason"),
]

CORPUS = [
    (contract, "/".join([contract, *([valid["kind"]] if "kind" in valid else []), *([valid["notice"]] if "notice" in valid else []), case]), value, ok)
    for contract, valid, number, time, text in CONTRACT_SAMPLES
    for case, value, ok in agreement_cases(valid, number, time, text)
] + [("DisputeReported", f"DisputeReported/{case}", value, ok) for case, value, ok in report_cases(report_payload())] + [
    # The tier follows from the level: both sides say so (an if/then per level in the schema).
    ("DisputeTriaged", f"DisputeTriaged/tier {tier} at level {level}", json.dumps(_payload(TRIAGED) | {"level": level, "tier": tier}).encode(), ok)
    for level, tier, ok in [(1, "on_site", True), (2, "mediation_room", True), (1, "joint_consultation", False), (3, "on_site", False)]
]

# What JSON Schema cannot say, kept in view: the models compare two fields, which no 2020-12 keyword can.
BEYOND_JSON_SCHEMA = [
    ("DisputeTriaged", "report about another dispute", _payload(TRIAGED) | {"dispute_id": "D-other"}),
    ("ReassessmentRequested", "report about another dispute", _payload(REASSESS) | {"dispute_id": "D-other"}),
]

_VALIDATORS: dict[str, Draft202012Validator] = {}


def schema_validator(contract: str) -> Draft202012Validator:
    """Load a committed JSON Schema into a 2020-12 validator that asserts formats."""
    if contract not in _VALIDATORS:
        schema = json.loads((JSON_DIR / f"{contract}.json").read_text())
        Draft202012Validator.check_schema(schema)
        _VALIDATORS[contract] = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    return _VALIDATORS[contract]


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _utf8(node: Any) -> None:
    if isinstance(node, str):
        node.encode("utf-8")  # raises on a lone surrogate
    elif isinstance(node, dict):
        for key, value in node.items():
            _utf8(key)
            _utf8(value)
    elif isinstance(node, list):
        for value in node:
            _utf8(value)


def schema_takes(contract: str, raw: bytes) -> bool:
    """Say whether the committed JSON Schema takes the bytes, read as I-JSON."""
    try:
        instance = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
        _utf8(instance)
    except (UnicodeError, ValueError, RecursionError):
        return False
    return schema_validator(contract).is_valid(instance)


def model_takes(contract: str, raw: bytes) -> bool:
    """Say whether the model takes the bytes as the service parses them."""
    try:
        TypeAdapter(CONTRACTS[contract]).validate_json(raw)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("contract, case, raw, valid", CORPUS, ids=[c for _, c, _, _ in CORPUS])
def test_the_schema_and_the_model_give_the_same_verdict(contract, case, raw, valid):
    assert (schema_takes(contract, raw), model_takes(contract, raw)) == (valid, valid)


def test_the_corpus_covers_every_contract_with_good_and_hostile_records():
    assert {c for c, *_ in CORPUS} == set(CONTRACTS)
    assert sum(ok for *_, ok in CORPUS) >= 90 and sum(not ok for *_, ok in CORPUS) >= 500


@pytest.mark.parametrize("contract, case, payload", BEYOND_JSON_SCHEMA, ids=[c for _, c, _ in BEYOND_JSON_SCHEMA])
def test_what_only_the_model_can_refuse_is_still_refused_by_it(contract, case, payload):
    raw = json.dumps(payload).encode()
    assert (schema_takes(contract, raw), model_takes(contract, raw)) == (True, False)


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_every_json_schema_declares_draft_2020_12(contract):
    schema = json.loads((JSON_DIR / f"{contract}.json").read_text())
    assert schema["$schema"] == JSON_SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
