"""Dead letters: rejected bytes kept as they came, with the reason and origin in headers, and CloudEvents headers."""

from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from schemas.cloudevents import cloudevent_headers

# The value of a dead letter is the original message bytes, untouched; everything else is a header.
REASON = "dlq_reason"
SOURCE_TOPIC = "dlq_source_topic"
SOURCE_PARTITION = "dlq_source_partition"
SOURCE_OFFSET = "dlq_source_offset"
TRUNCATED_FROM = "dlq_truncated_from"

CE_TYPE = "cn.fengqiao.deadletter.v1"
# The value is the rejected bytes, which need not be JSON at all.
CONTENT_TYPE = "application/octet-stream"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def dead_letter_id(topic: str, partition: int, offset: int) -> str:
    """Name a dead letter by the record it keeps: a redelivered record is dead-lettered again under the same id."""
    # Kafka topic names cannot hold a colon, so the three parts never run into each other.
    return f"{topic}:{partition}:{offset}"


def dead_letter_cloudevent(source: str, topic: str, partition: int, offset: int, timestamp_ms: int | None) -> dict[str, str]:
    """Build the `ce_*` headers of a dead letter from its record alone, so a redelivery republishes the same bytes."""
    # The record's own timestamp, never the clock: the same record makes the same dead letter whenever it comes.
    time = _EPOCH + timedelta(milliseconds=timestamp_ms) if timestamp_ms is not None and timestamp_ms >= 0 else None
    headers = cloudevent_headers(dead_letter_id(topic, partition, offset), CE_TYPE, source, time or _EPOCH)
    if time is None:  # ce_time is optional in CloudEvents: better absent than made up
        del headers["ce_time"]
    return headers | {"content-type": CONTENT_TYPE}


def dead_letter_headers(reason: str, topic: str, partition: int, offset: int) -> dict[str, str]:
    """Build the headers that say why a message was rejected and where it came from."""
    return {
        REASON: reason,
        SOURCE_TOPIC: topic,
        SOURCE_PARTITION: str(partition),
        SOURCE_OFFSET: str(offset),
    }


def rejection_reason(error: ValidationError) -> str:
    """Summarise a validation error by field path and rule, never echoing the (possibly personal) input."""
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:5]:
        # An unknown key is chosen by the sender, so it may itself be personal data: never named.
        loc = item["loc"][:-1] + ("(unknown field)",) if item["type"] == "extra_forbidden" else item["loc"]
        field = ".".join(str(p) for p in loc) or "(message)"
        # A bad discriminator's message quotes the sender's tag, which may itself be personal data.
        message = f"tag not one of {item['ctx']['expected_tags']}" if item["type"] == "union_tag_invalid" else item["msg"]
        parts.append(f"{field}: {message}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
