"""Write the committed JSON Schemas and AsyncAPI documents, or report how they drifted."""

import json
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin

from pydantic import TypeAdapter

from schemas import deadletters
from schemas.catalog import CONTRACTS, DEAD_LETTERS, DEPARTMENT_PLACEHOLDER, DEVELOPMENT_TOPICS, EXTRA_READS, SERVICES, Channel, ServiceTopology
from schemas.cloudevents import CONTENT_TYPE, SPEC_VERSION, service_source
from schemas.common import RFC3339
from schemas.rules import RULES_KEY_ID_HEADER, RULES_SIGNATURE_HEADER, RULES_TRIAGE, RULES_TRIAGE_KEY
from schemas.workorders import DEPARTMENTS

SCHEMAS_DIR = Path(__file__).parent
JSON_DIR = SCHEMAS_DIR / "json"
ASYNCAPI_DIR = SCHEMAS_DIR / "asyncapi"
# 1.1.0: masked phones and ID numbers in outgoing parties, and the disclosure policy version on the records that carry them.
# 1.2.0: one case per dispute (`same_matter` on graded disputes, case notices on the department topics, `reported_again`
# audit events); timestamps RFC 3339 exactly, integers written 5.0 accepted, CloudEvents headers on dead letters.
# 1.3.0: `detections` on DisputeTriaged, the phrases that raised detected risk flags (optional, default empty).
# 1.4.0: answers to every department update (`UpdateAnswered`: applied, superseded, refused) and cancellations of
# superseded orders (`OrderCancelled`) on the department topics.
CONTRACT_VERSION = "1.4.0"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KAFKA_BINDING = "0.5.0"


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def portable_pattern(pattern: str) -> str:
    """Rewrite a model's pattern so ECMA 262 and Python's re.search mean what pydantic's Rust regex does."""
    # Measured: Rust's `$` is the very end of the text, Python's also matches before one final newline, and the
    # Rust engine refuses lookarounds, so the models keep `$` and only the documents say `$(?!\n)` (the same in ECMA).
    body = pattern[:-1]
    if not pattern.endswith("$") or pattern.endswith("\\$") or "$" in body.replace("\\$", ""):
        raise ValueError(f"pattern {pattern!r}: only one `$`, at the very end, is rewritten safely")
    return body + "$(?!\\n)"


def _portable(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: portable_pattern(v) if k == "pattern" and isinstance(v, str) else _portable(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_portable(v) for v in node]
    return node


def json_schemas() -> dict[Path, str]:
    """Render the JSON Schema of every contract, keyed by its file, each declaring its draft."""
    return {
        JSON_DIR / f"{name}.json": _dump({"$schema": JSON_SCHEMA_DIALECT} | _portable(TypeAdapter(contract).json_schema(mode="validation")))
        for name, contract in CONTRACTS.items()
    }


def _asyncapi_schemas(contracts: list[str]) -> dict[str, Any]:
    # Payload schemas as AsyncAPI Schema objects (a superset of draft 07): one definition per model, no `$defs`.
    keys, definitions = TypeAdapter.json_schemas(
        [(name, "validation", TypeAdapter(CONTRACTS[name])) for name in contracts], ref_template="#/components/schemas/{model}"
    )
    schemas = dict(definitions.get("$defs", {}))
    for (name, _), schema in keys.items():
        if "$ref" not in schema:  # a union (the audit trail) is not a model: it gets its own definition
            schemas[name] = schema
    for schema in schemas.values():
        # AsyncAPI's discriminator is the property's name; pydantic writes OpenAPI's object form.
        if isinstance(schema.get("discriminator"), dict):
            schema["discriminator"] = schema["discriminator"]["propertyName"]
    return _portable(schemas)


def _channel_id(topic: str) -> str:
    return topic.replace(DEPARTMENT_PLACEHOLDER, "department").replace(".", "_")


def _sources(contract: str) -> list[str]:
    return sorted({service_source(s.name) for s in SERVICES.values() for c in s.produces if c.contract == contract})


def _ce_types(contract: Any) -> list[str]:
    # The audit trail is a union of four models, each its own CloudEvents type.
    union = get_args(contract)[0] if get_origin(contract) is Annotated else contract
    return [model.ce_type for model in (get_args(union) or (union,))]


def _ce_ids() -> dict[str, str]:
    # Which payload field each contract's ce_id repeats (services/*/handlers.py, encode_event's event_id).
    return {"WorkOrderIssued": "work_order_id", "FollowupDue": "followup_id"}


def _cloudevent_headers(ce_types: list[str], sources: list[str], id_text: str, content_type: str, required: bool) -> dict[str, Any]:
    one_of = lambda values: {"const": values[0]} if len(values) == 1 else {"enum": values}  # noqa: E731
    properties: dict[str, Any] = {
        "ce_specversion": {"type": "string", "const": SPEC_VERSION, "description": "CloudEvents version"},
        "ce_id": {"type": "string", "minLength": 1, "description": id_text},
        "ce_type": {"type": "string", **one_of(ce_types), "description": "CloudEvents type: the contract and its version"},
        "ce_source": {"type": "string", "description": "The service that wrote the record", **(one_of(sources) if sources else {})},
        "ce_time": {"type": "string", "format": "date-time", "pattern": RFC3339, "description": "When the event happened (RFC 3339)"},
        "content-type": {"type": "string", "const": content_type, "description": "CloudEvents datacontenttype"},
    }
    headers: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        headers["required"] = ["ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type"]
    return headers


def _contract_message(name: str) -> dict[str, Any]:
    contract = CONTRACTS[name]
    sources = _sources(name)
    ours = bool(sources)  # else written by upstream platforms or departments, whose headers no service reads
    id_text = f"CloudEvents id: the payload's {_ce_ids().get(name, 'event_id')}"
    headers = _cloudevent_headers(_ce_types(contract), sources, id_text, CONTENT_TYPE, ours)
    if not ours:
        headers["description"] = "Written by systems outside Fengqiao: CloudEvents headers are welcome, not required nor read"
    return {
        "name": name,
        "title": name,
        # A model says what it is in its docstring; the audit trail, a union, in its field's description.
        "summary": contract.__doc__.splitlines()[0] if isinstance(contract, type) else get_args(contract)[1].description,
        "contentType": CONTENT_TYPE,
        "headers": _portable(headers),
        "payload": {"$ref": f"#/components/schemas/{name}"},
        "correlationId": {
            "description": "The dispute the record is about, also its key: one dispute's records stay in order on one partition",
            "location": "$message.payload#/dispute_id",
        },
        "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING, "key": _portable({"type": "string", "pattern": r"^[A-Za-z0-9._:-]+$", "maxLength": 64, "description": "The payload's dispute_id, UTF-8"})}},
    }


def _dead_letter_message(service: str) -> dict[str, Any]:
    headers = _cloudevent_headers(
        [deadletters.CE_TYPE], [service_source(service)],
        "CloudEvents id: the rejected record's <topic>:<partition>:<offset>, the same on every redelivery", deadletters.CONTENT_TYPE, True,
    )
    headers["properties"]["ce_id"]["pattern"] = r"^[A-Za-z0-9._-]+:[0-9]+:[0-9]+$"
    headers["properties"]["ce_time"]["description"] = "The rejected record's timestamp (absent when it had none)"
    headers["required"].remove("ce_time")
    headers["properties"] |= {
        deadletters.REASON: {"type": "string", "minLength": 1, "description": "The field and the rule at fault, never the input"},
        deadletters.SOURCE_TOPIC: {"type": "string", "minLength": 1, "description": "Topic of the rejected record"},
        deadletters.SOURCE_PARTITION: {"type": "string", "pattern": "^[0-9]+$", "description": "Partition of the rejected record"},
        deadletters.SOURCE_OFFSET: {"type": "string", "pattern": "^[0-9]+$", "description": "Offset of the rejected record"},
        deadletters.TRUNCATED_FROM: {"type": "string", "pattern": "^[0-9]+$", "description": "The value's size when it was cut to 900 kB"},
    }
    headers["required"] += [deadletters.REASON, deadletters.SOURCE_TOPIC, deadletters.SOURCE_PARTITION, deadletters.SOURCE_OFFSET]
    return {
        "name": "DeadLetter",
        "title": "DeadLetter",
        "summary": "A consumed record that can never be processed, kept untouched",
        "contentType": deadletters.CONTENT_TYPE,
        "headers": _portable(headers),
        "payload": {"type": "string", "format": "binary", "description": "The rejected record's value, byte for byte"},
        "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING, "key": {"type": "string", "description": "The rejected record's key, unchanged (empty when it had none)"}}},
    }


def _rules_message() -> dict[str, Any]:
    return {
        "name": "TriageRules",
        "title": "TriageRules",
        "summary": "A whole triage rules file, signed",
        "contentType": "application/yaml",
        "headers": _portable({
            "type": "object",
            "description": "Triage with trusted keys configured refuses a record without both (services/triage/signing.py)",
            "properties": {
                RULES_KEY_ID_HEADER: {"type": "string", "pattern": "^[0-9a-f]{16}$", "description": "First 16 hex digits of the SHA-256 of the signing key"},
                RULES_SIGNATURE_HEADER: {"type": "string", "pattern": "^[A-Za-z0-9+/]{86}==$", "description": "Base64 of the Ed25519 signature of the exact value bytes"},
            },
        }),
        "payload": {"type": "string", "description": "The rules file (YAML text), exactly as signed"},
        "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING, "key": {"type": "string", "const": RULES_TRIAGE_KEY.decode(), "description": "The service the rules are for"}}},
    }


def _channel(address: str, message: str, description: str, extra_bindings: dict[str, Any] | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {"address": address, "description": description, "messages": {message: {"$ref": f"#/components/messages/{message}"}}}
    if DEPARTMENT_PLACEHOLDER in address:
        channel["parameters"] = {"department": {"$ref": "#/components/parameters/department"}}
    else:
        channel["bindings"] = {"kafka": {"bindingVersion": KAFKA_BINDING, "topic": address, **(extra_bindings or {})}}
    return channel


def asyncapi_document(service: ServiceTopology) -> dict[str, Any]:
    """Build the AsyncAPI 3 document of one service: its topics, dead letters and rules, with headers and keys."""
    development = {shared: topic for topic, shared in DEVELOPMENT_TOPICS.items()}
    inputs = list(service.consumes) + [
        Channel(shared, c.contract, f"{c.description}; development only, the sender named by the payload alone")
        for c in service.consumes for shared, topic in development.items() if topic == c.topic
    ]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def add(address: str, message: str, description: str, action: str, extra: dict[str, Any] | None = None) -> None:
        key = _channel_id(address)
        channels[key] = _channel(address, message, description, extra)
        operations[f"{action}_{key}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{key}"},
            "messages": [{"$ref": f"#/channels/{key}/messages/{message}"}],
        }

    contracts = sorted({c.contract for c in inputs + list(service.produces)})
    for channel in inputs:
        add(channel.topic, channel.contract, channel.description, "receive")
    for channel in service.produces:
        add(channel.topic, channel.contract, channel.description, "send")
    for topic in sorted({DEAD_LETTERS[c.topic] for c in service.consumes}):
        add(topic, "DeadLetter", "Records this service can never process, kept 7 days for operators", "send", {"topicConfiguration": {"retention.ms": 7 * 24 * 3600 * 1000}})
    messages = {name: _contract_message(name) for name in contracts} | {"DeadLetter": _dead_letter_message(service.name)}
    if RULES_TRIAGE in EXTRA_READS.get(service.name, ()):
        add(RULES_TRIAGE, "TriageRules", "Signed rules files, compacted: read from the start without a group", "receive", {"topicConfiguration": {"cleanup.policy": ["compact"]}})
        messages["TriageRules"] = _rules_message()
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"Fengqiao {service.name}", "version": CONTRACT_VERSION, "description": service.description},
        "defaultContentType": CONTENT_TYPE,
        "servers": {"development": {"host": "kafka:9092", "protocol": "kafka", "description": "The compose broker"}},
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": _asyncapi_schemas(contracts),
            "messages": messages,
            "parameters": {"department": {"enum": list(DEPARTMENTS), "description": "The department whose own topic this is"}},
        },
    }


def asyncapi_documents() -> dict[Path, str]:
    """Render the AsyncAPI document of every service, keyed by its file."""
    return {ASYNCAPI_DIR / f"{name}.json": _dump(asyncapi_document(svc)) for name, svc in SERVICES.items()}


def all_documents() -> dict[Path, str]:
    """Render every generated document."""
    return json_schemas() | asyncapi_documents()


def drift() -> list[str]:
    """List the committed documents that differ from the models, or are missing or stale."""
    expected = all_documents()
    problems = [f"{path.name}: differs" for path, text in expected.items() if not path.exists() or path.read_text() != text]
    stale = {p for d in (JSON_DIR, ASYNCAPI_DIR) for p in d.glob("*.json")} - set(expected)
    return problems + [f"{path.name}: no longer generated" for path in sorted(stale)]


def write() -> list[Path]:
    """Write every generated document and remove stale ones; return what was written."""
    expected = all_documents()
    for directory in (JSON_DIR, ASYNCAPI_DIR):
        directory.mkdir(exist_ok=True)
        for stale in set(directory.glob("*.json")) - set(expected):
            stale.unlink()
    for path, text in expected.items():
        path.write_text(text)
    return sorted(expected)


if __name__ == "__main__":
    for written in write():
        print(f"wrote {written}")
