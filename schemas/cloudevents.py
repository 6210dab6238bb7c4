"""CloudEvents 1.0 binary-mode Kafka headers, so standard tooling can read every output."""

from datetime import datetime

from schemas.common import rfc3339

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"


def cloudevent_headers(event_id: str, ce_type: str, source: str, time: datetime) -> dict[str, str]:
    """Build the `ce_*` headers of one event (Kafka protocol binding, binary content mode)."""
    return {
        "ce_specversion": SPEC_VERSION,
        "ce_id": event_id,
        "ce_type": ce_type,
        "ce_source": source,
        "ce_time": rfc3339(time),
        "content-type": CONTENT_TYPE,
    }


def service_source(service: str) -> str:
    """Name a service as the `ce_source` of everything it writes, dead letters included."""
    return f"/fengqiao/{service}"
