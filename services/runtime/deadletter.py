"""Dead letters on the wire: the rejected record's bytes, untouched, with reason and origin in headers."""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from schemas.deadletters import TRUNCATED_FROM, dead_letter_cloudevent, dead_letter_headers, rejection_reason
from services.runtime.kafka import Outgoing, wire_headers

# Beyond this a dead letter would not fit a default Kafka request; the header says what was cut.
DEAD_LETTER_MAX_BYTES = 900 * 1024


def dead_letter(record: Any, reason: str, topic: str, *, source: str) -> Outgoing:
    """Wrap a consumed record that can never be processed for its dead-letter topic; `source` is the refusing service."""
    headers = dead_letter_headers(reason, record.topic, record.partition, record.offset)
    headers |= dead_letter_cloudevent(source, record.topic, record.partition, record.offset, getattr(record, "timestamp", None))
    value = record.value or b""
    if len(value) > DEAD_LETTER_MAX_BYTES:
        headers[TRUNCATED_FROM] = str(len(value))
        value = value[:DEAD_LETTER_MAX_BYTES]
    return Outgoing(topic, record.key or b"", value, wire_headers(headers))


Parsed = TypeVar("Parsed")


def too_large(value: bytes, max_bytes: int) -> str | None:
    """Say why a message is refused for its size, or None when it fits."""
    return f"message: {len(value)} bytes exceeds the limit of {max_bytes}" if len(value) > max_bytes else None


def validated(
    records: Sequence[Any], parse: Callable[[bytes], Parsed], invalid_topic: str, max_bytes: int, on_invalid: Callable[[], None],
    *, source: str,
) -> tuple[list[tuple[Any, Parsed]], list[Outgoing]]:
    """Split consumed records into parsed inputs and dead letters whose reason names the field (or the size) at fault."""
    valid, dead = [], []
    for record in records:
        value = record.value or b""
        reason = too_large(value, max_bytes)
        if reason is None:
            try:
                valid.append((record, parse(value)))
                continue
            except ValidationError as error:
                reason = rejection_reason(error)
        on_invalid()
        dead.append(dead_letter(record, reason, invalid_topic, source=source))
    return valid, dead
