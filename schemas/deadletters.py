"""Dead letters: rejected bytes kept as they came, with the reason and origin in headers."""

from pydantic import ValidationError

# The value of a dead letter is the original message bytes, untouched; everything else is a header.
REASON = "dlq_reason"
SOURCE_TOPIC = "dlq_source_topic"
SOURCE_PARTITION = "dlq_source_partition"
SOURCE_OFFSET = "dlq_source_offset"


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
