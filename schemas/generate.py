"""Write the committed JSON Schemas and AsyncAPI documents, or report how they drifted."""

import json
from pathlib import Path
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic import TypeAdapter

from schemas.catalog import CONTRACTS, SERVICES, ServiceTopology

SCHEMAS_DIR = Path(__file__).parent
JSON_DIR = SCHEMAS_DIR / "json"
ASYNCAPI_DIR = SCHEMAS_DIR / "asyncapi"
# 1.1.0: masked phones and ID numbers in outgoing parties, and the disclosure policy version on the records that carry them.
# 1.2.0: one case per dispute: `same_matter` on graded disputes; case notices on the department topics; `reported_again` and `merged` audit events.
CONTRACT_VERSION = "1.2.0"


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def json_schemas() -> dict[Path, str]:
    """Render the JSON Schema of every contract, keyed by its file."""
    return {
        JSON_DIR / f"{name}.json": _dump(TypeAdapter(contract).json_schema(mode="validation"))
        for name, contract in CONTRACTS.items()
    }


def _document_consumer(broker: KafkaBroker, topic: str, contract: Any, description: str) -> None:
    # The handler exists only so FastStream can read the payload type off its signature.
    async def consume(message: contract) -> None:  # type: ignore[valid-type]
        """Receive one message of the topic's contract."""

    broker.subscriber(topic, title=f"{topic}:consume", description=description)(consume)


def asyncapi_document(service: ServiceTopology) -> dict[str, Any]:
    """Build the AsyncAPI 3 document of one service from its topology."""
    broker = KafkaBroker("kafka:9092")
    for channel in service.consumes:
        _document_consumer(broker, channel.topic, CONTRACTS[channel.contract], channel.description)
    for channel in service.produces:
        broker.publisher(
            channel.topic,
            title=f"{channel.topic}:publish",
            description=channel.description,
            schema=CONTRACTS[channel.contract],
        )
    spec = AsyncAPI(
        broker,
        title=f"Fengqiao {service.name}",
        version=CONTRACT_VERSION,
        description=service.description,
        schema_version="3.0.0",
    )
    return json.loads(spec.to_specification().to_json())


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
