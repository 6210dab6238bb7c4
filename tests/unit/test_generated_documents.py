"""The committed JSON Schemas and AsyncAPI documents must match the models."""

import json
import re
from dataclasses import dataclass
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jsonschema import Draft7Validator

from schemas.catalog import CONTRACTS, DEAD_LETTERS, DEVELOPMENT_TOPICS, EXTRA_READS, SERVICES
from schemas.cloudevents import service_source
from schemas.disputes import DISPUTES_REASSESS, DISPUTES_TRIAGED
from schemas.followups import FOLLOWUPS_DUE
from schemas.generate import ASYNCAPI_DIR, JSON_DIR, drift, portable_pattern
from schemas.rules import RULES_KEY_ID_HEADER, RULES_SIGNATURE_HEADER, RULES_TRIAGE, RULES_TRIAGE_KEY
from schemas.workorders import DEPARTMENTS, WORKORDERS_EVENTS
from services.dispatch import handlers as dispatch_handlers
from services.followup import handlers as followup_handlers
from services.runtime.deadletter import dead_letter
from services.runtime.kafka import encode_event
from services.triage import handlers as triage_handlers
from services.triage.signing import sign, to_headers
from tests.support.samples import DUE, ORDER, ORDER_EVENTS, REASSESS, TRIAGED, at


def test_committed_documents_match_the_models():
    assert drift() == [], "run `fengqiao schemas generate` and commit the result"


def test_every_contract_has_a_json_schema():
    assert {p.stem for p in JSON_DIR.glob("*.json")} == set(CONTRACTS)


def test_json_schema_says_timestamps_are_date_times():
    schema = json.loads((JSON_DIR / "DisputeReported.json").read_text())
    assert schema["properties"]["reported_at"]["format"] == "date-time"
    assert schema["additionalProperties"] is False


def _document(service: str) -> dict:
    return json.loads((ASYNCAPI_DIR / f"{service}.json").read_text())


def _messages(document: dict) -> dict[str, dict]:
    """Map each channel's address to its one message, as documented."""
    out = {}
    for channel in document["channels"].values():
        (ref,) = [m["$ref"] for m in channel["messages"].values()]
        out[channel["address"]] = document["components"]["messages"][ref.rsplit("/", 1)[1]]
    return out


def test_each_service_asyncapi_names_its_topics_dead_letters_and_rules():
    for name, service in SERVICES.items():
        document = _document(name)
        assert document["asyncapi"].startswith("3.")
        addresses = {channel["address"] for channel in document["channels"].values()}
        shared = {DEVELOPMENT_TOPICS[c.topic] for c in service.consumes if c.topic in DEVELOPMENT_TOPICS}
        dead = {DEAD_LETTERS[c.topic] for c in service.consumes}
        extra = set(EXTRA_READS.get(name, ()))
        assert addresses == {c.topic for c in service.consumes + service.produces} | shared | dead | extra
        assert len(document["operations"]) == len(addresses)
    assert RULES_TRIAGE in {c["address"] for c in _document("triage")["channels"].values()}


def _resolve(document: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        node = node[unquote(part).replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node):
    if isinstance(node, dict):
        yield from ([node["$ref"]] if isinstance(node.get("$ref"), str) else [])
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_no_reference_dangles(service):
    document = _document(service)
    refs = list(_refs(document))
    assert refs and all(_resolve(document, ref) is not None for ref in refs)


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_no_json_schema_reference_dangles(contract):
    schema = json.loads((JSON_DIR / f"{contract}.json").read_text())
    assert all(_resolve(schema, ref) is not None for ref in _refs(schema))


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_templated_address_declares_its_parameters(service):
    for channel in _document(service)["channels"].values():
        named = set(re.findall(r"{([^}]+)}", channel["address"]))
        assert named == set(channel.get("parameters", {})), channel["address"]
    if service in ("dispatch", "followup"):
        assert _document(service)["components"]["parameters"]["department"]["enum"] == list(DEPARTMENTS)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_correlation_ids_point_at_a_field_every_record_carries(service):
    document = _document(service)
    for name, message in document["components"]["messages"].items():
        if "correlationId" not in message:
            continue
        assert message["correlationId"]["location"] == "$message.payload#/dispute_id", name
        schema = document["components"]["schemas"][name]
        variants = [_resolve(document, v["$ref"]) for v in schema.get("oneOf", [])] or [schema]
        assert all("dispute_id" in v["required"] for v in variants), name


def _conforms(schema: dict, instance) -> list[str]:
    return [e.message for e in Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER).iter_errors(instance)]


def test_the_documented_headers_and_key_are_those_encode_event_writes():
    produced = {
        "triage": [(DISPUTES_TRIAGED, TRIAGED, TRIAGED.event_id)],
        "dispatch": [("workorders.{department}", ORDER, ORDER.work_order_id), (WORKORDERS_EVENTS, ORDER_EVENTS[0], "ev-1"), (DISPUTES_REASSESS, REASSESS, REASSESS.event_id)],
        "followup": [(FOLLOWUPS_DUE, DUE, DUE.followup_id), (DISPUTES_REASSESS, REASSESS, REASSESS.event_id)],
    }
    for service, outputs in produced.items():
        messages = _messages(_document(service))
        for address, event, event_id in outputs:
            record = encode_event(address, event, event_id, service_source(service), at("2026-03-02T09:30:00.5+08:00"))
            headers = {k: v.decode() for k, v in record.headers}
            message = messages[address]
            assert set(headers) == set(message["headers"]["properties"]) == set(message["headers"]["required"]), address
            assert _conforms(message["headers"], headers) == [], address
            assert _conforms(message["bindings"]["kafka"]["key"], record.key.decode()) == [], address


@dataclass
class _Consumed:
    topic: str
    partition: int = 0
    offset: int = 7
    timestamp: int = 1_772_415_000_000
    key: bytes = b"D-1"
    value: bytes = b"a" * 1_000_000


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_documented_dead_letter_is_what_a_service_writes(service):
    messages = _messages(_document(service))
    for address in {DEAD_LETTERS[c.topic] for c in SERVICES[service].consumes}:
        letter = dead_letter(_Consumed("workorders.court.updates"), "status: Input should be", address, source=service_source(service))
        message = messages[address]
        headers = {k: v.decode() for k, v in letter.headers}
        assert set(headers) <= set(message["headers"]["properties"]) and set(message["headers"]["required"]) <= set(headers)
        assert _conforms(message["headers"], headers) == [], address
        assert message["payload"]["format"] == "binary" and message["contentType"] == headers["content-type"]


def test_the_rules_topic_documents_its_signature_headers_and_key():
    message = _messages(_document("triage"))[RULES_TRIAGE]
    headers = to_headers(sign(b"version: 1\n", Ed25519PrivateKey.generate()))
    assert set(headers) == set(message["headers"]["properties"]) == {RULES_KEY_ID_HEADER, RULES_SIGNATURE_HEADER}
    assert _conforms(message["headers"], headers) == []
    assert message["bindings"]["kafka"]["key"]["const"] == RULES_TRIAGE_KEY.decode()


def test_each_service_writes_under_the_source_its_documents_name():
    assert (triage_handlers.CE_SOURCE, dispatch_handlers.CE_SOURCE, followup_handlers.CE_SOURCE) == tuple(
        service_source(s) for s in ("triage", "dispatch", "followup")
    )


@pytest.mark.parametrize("pattern, text, matches", [
    (r"^[A-Za-z0-9]+$", "D1", True),
    (r"^[A-Za-z0-9]+$", "D1\n", False),
    (r"^[^\x00-\x1f]*$", "", True),
    (r"^(?:a|b)$", "b\n", False),
])
def test_a_portable_pattern_refuses_a_trailing_newline_in_python_as_pydantic_does(pattern, text, matches):
    assert bool(re.search(portable_pattern(pattern), text)) is matches


@pytest.mark.parametrize("pattern", [r"^a$|^b$", r"^a", r"^a\$"])
def test_a_pattern_the_rewrite_cannot_keep_equivalent_is_refused(pattern):
    with pytest.raises(ValueError):
        portable_pattern(pattern)


def test_drift_is_detected(tmp_path, monkeypatch):
    import schemas.generate as generate

    stale = tmp_path / "json"
    stale.mkdir()
    (stale / "DisputeReported.json").write_text("{}\n")
    monkeypatch.setattr(generate, "JSON_DIR", stale)
    problems = generate.drift()
    assert "DisputeReported.json: differs" in problems
    assert "FollowupResult.json: differs" in problems
