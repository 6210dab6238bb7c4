"""Dead letters: the rejected bytes untouched, reason and origin in `dlq_*` headers, CloudEvents headers from the record alone."""

from dataclasses import dataclass

import pytest

from schemas.deadletters import CE_TYPE, dead_letter_id
from services.runtime.deadletter import DEAD_LETTER_MAX_BYTES, dead_letter


@dataclass
class Consumed:
    """The fields of a consumed record a dead letter reads."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None


RECORD = Consumed("disputes.reported", 3, 42, 1_772_415_000_123, b"D-1", b'{"event_id": 1}')


def test_a_dead_letter_keeps_the_bytes_and_says_why_where_and_what_in_cloudevents_terms():
    letter = dead_letter(RECORD, "event_id: Input should be a valid string", "disputes.invalid", source="/fengqiao/triage")
    assert (letter.topic, letter.key, letter.value) == ("disputes.invalid", b"D-1", RECORD.value)
    assert dict((k, v.decode()) for k, v in letter.headers) == {
        "dlq_reason": "event_id: Input should be a valid string",
        "dlq_source_topic": "disputes.reported",
        "dlq_source_partition": "3",
        "dlq_source_offset": "42",
        "ce_specversion": "1.0",
        "ce_id": "disputes.reported:3:42",
        "ce_type": "cn.fengqiao.deadletter.v1",
        "ce_source": "/fengqiao/triage",
        "ce_time": "2026-03-02T01:30:00.123000+00:00",
        "content-type": "application/octet-stream",
    }


def test_a_redelivered_record_is_dead_lettered_as_the_same_bytes():
    first = dead_letter(RECORD, "x: y", "disputes.invalid", source="/fengqiao/triage")
    again = dead_letter(Consumed(**vars(RECORD)), "x: y", "disputes.invalid", source="/fengqiao/triage")
    assert again == first and CE_TYPE == "cn.fengqiao.deadletter.v1"


# (case, record, header, expected value; None when the header must be absent)
CASES = [
    ("no timestamp: no ce_time rather than the clock", Consumed("t", 0, 1, None, None, b"{}"), "ce_time", None),
    ("Kafka's -1 for no timestamp", Consumed("t", 0, 1, -1, None, b"{}"), "ce_time", None),
    ("the epoch itself is a timestamp", Consumed("t", 0, 1, 0, None, b"{}"), "ce_time", "1970-01-01T00:00:00+00:00"),
    ("no key: an empty key", Consumed("t", 0, 1, 0, None, b"{}"), "ce_id", "t:0:1"),
    ("other partition and offset", Consumed("workorders.court.updates", 11, 9_000_000_000, 0, b"k", b"{}"), "ce_id", "workorders.court.updates:11:9000000000"),
    ("a value cut to fit", Consumed("t", 0, 1, 0, b"k", b"a" * (DEAD_LETTER_MAX_BYTES + 5)), "dlq_truncated_from", str(DEAD_LETTER_MAX_BYTES + 5)),
    ("a value that fits is not cut", Consumed("t", 0, 1, 0, b"k", b"{}"), "dlq_truncated_from", None),
]


@pytest.mark.parametrize("case, record, header, expected", CASES, ids=[c[0] for c in CASES])
def test_dead_letter_headers(case, record, header, expected):
    assert dead_letter(record, "r: s", "t.invalid", source="/fengqiao/dispatch").header(header) == expected


def test_dead_letter_ids_cannot_collide_across_topics():
    # Topic names hold no colon, so no two records share an id.
    assert dead_letter_id("a.1", 2, 3) != dead_letter_id("a", 12, 3) and dead_letter_id("a", 1, 23) != dead_letter_id("a", 12, 3)
