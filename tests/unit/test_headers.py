"""A header value that is not UTF-8 does not fail its batch in FastStream's own parser."""

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.parser import AioKafkaBatchParser, AioKafkaParser

from services.runtime.service import decodable_headers


def record(offset: int, headers: list[tuple[str, bytes]]) -> ConsumerRecord:
    return ConsumerRecord(
        topic="disputes.reported", partition=0, offset=offset, timestamp=0, timestamp_type=0, key=b"k", value=b"{}",
        checksum=None, serialized_key_size=1, serialized_value_size=2, headers=headers,
    )


BATCH = (record(1, [("ok", b"fine")]), record(2, [("x", b"\xff\xfe\xc3\x28"), ("ce_id", b"evt-2")]), record(3, []))


async def test_the_framework_alone_fails_the_whole_batch_on_one_header():
    with pytest.raises(UnicodeDecodeError):
        await AioKafkaBatchParser(KafkaMessage, None).parse_batch(BATCH)


async def test_a_batch_with_an_undecodable_header_value_is_parsed_with_every_record_and_value():
    parsed = await decodable_headers(BATCH, AioKafkaBatchParser(KafkaMessage, None).parse_batch)
    assert [r.offset for r in parsed.raw_message] == [1, 2, 3]
    assert [r.value for r in parsed.raw_message] == [b"{}"] * 3
    assert parsed.batch_headers[1] == {"x": "\ufffd\ufffd\ufffd(", "ce_id": "evt-2"}
    assert parsed.raw_message[0] is BATCH[0], "records whose headers decode are passed as they are"


async def test_a_single_record_is_parsed_the_same_way():
    parsed = await decodable_headers(BATCH[1], AioKafkaParser(KafkaMessage, None).parse_message)
    assert parsed.raw_message.offset == 2 and parsed.headers["ce_id"] == "evt-2"
