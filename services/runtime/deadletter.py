"""Dead letters on the wire: the rejected record's bytes, untouched, with reason and origin in headers."""

from typing import Any

from schemas.deadletters import dead_letter_headers
from services.runtime.kafka import Outgoing

# Beyond this a dead letter would not fit a default Kafka request; the header says what was cut.
DEAD_LETTER_MAX_BYTES = 900 * 1024


def dead_letter(record: Any, reason: str, topic: str) -> Outgoing:
    """Wrap a consumed record that can never be processed for its dead-letter topic."""
    headers = dead_letter_headers(reason, record.topic, record.partition, record.offset)
    value = record.value or b""
    if len(value) > DEAD_LETTER_MAX_BYTES:
        headers["dlq_truncated_from"] = str(len(value))
        value = value[:DEAD_LETTER_MAX_BYTES]
    return Outgoing(topic, record.key or b"", value, headers)
