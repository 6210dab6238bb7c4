"""Poison is isolated down to the record that fails alone; outages are raised untouched, to be waited out."""

import asyncio

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
)
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.runtime.poison import isolate_poison
from services.runtime.retry import is_outage
from tests.support.pipelines import Record


class _Driver(Exception):
    def __init__(self, sqlstate=None):
        super().__init__("driver error")
        self.sqlstate = sqlstate


def _validation_error() -> ValidationError:
    class Strict(BaseModel):
        n: int

    try:
        Strict.model_validate({"n": "x"})
    except ValidationError as error:
        return error


# (error, is it an outage)
OUTAGES = [
    (ConnectionRefusedError(), True),
    (OSError("network unreachable"), True),
    (asyncio.TimeoutError(), True),
    (PoolTimeout("pool exhausted"), True),
    (KafkaTimeoutError(), True),
    (KafkaConnectionError(), True),
    (MessageSizeTooLargeError(), False),
    (OperationalError("stmt", {}, _Driver()), True),  # SQLite: database is locked
    (InterfaceError("stmt", {}, _Driver()), True),
    (DBAPIError("stmt", {}, _Driver("08006")), True),  # connection failure
    (DBAPIError("stmt", {}, _Driver("40P01")), True),  # deadlock: trying again succeeds
    (DBAPIError("stmt", {}, _Driver("57P01")), True),  # administrator shutdown
    (DBAPIError("stmt", {}, _Driver("22021")), False),  # NUL in text
    (IntegrityError("stmt", {}, _Driver("23505")), False),
    (ValueError("bad"), False),
    (_validation_error(), False),
    (RecursionError(), False),
]


@pytest.mark.parametrize("error, outage", OUTAGES, ids=[f"{type(e).__name__}-{o}" for e, o in OUTAGES])
def test_outages_are_told_from_refusals(error, outage):
    assert is_outage(error) is outage


class Pipeline:
    """Fails any batch holding a poison record, with the given error; remembers what it handled."""

    def __init__(self, poison: set[int], error: Exception):
        self.poison, self.error, self.handled, self.calls = poison, error, [], 0

    async def __call__(self, records):
        self.calls += 1
        if any(r.offset in self.poison for r in records):
            raise self.error
        self.handled += [r.offset for r in records]


# (case, batch size, poison offsets, calls at most)
BATCHES = [
    ("no poison", 8, set(), 1),
    ("one in eight", 8, {5}, 1 + 2 * 3),
    ("first and last", 8, {0, 7}, 1 + 2 + 4 + 8),
    ("all poison", 3, {0, 1, 2}, 5),
    ("one in five hundred", 500, {321}, 1 + 2 * 9),
]


@pytest.mark.parametrize("case, size, poison, calls", BATCHES, ids=[b[0] for b in BATCHES])
async def test_a_failing_batch_is_split_until_each_poison_record_stands_alone(case, size, poison, calls):
    records = [Record("disputes.reported", f"r{n}".encode(), offset=n) for n in range(size)]
    pipeline, dead, counted = Pipeline(poison, _validation_error()), [], []

    async def publish(outgoing):
        dead.extend(outgoing)

    await isolate_poison(records, pipeline, publish, "disputes.invalid", lambda: counted.append(1), source="/fengqiao/triage")
    assert sorted(pipeline.handled) == [n for n in range(size) if n not in poison]
    assert sorted(int(d.header("dlq_source_offset")) for d in dead) == sorted(poison) and len(counted) == len(poison)
    assert {d.header("dlq_reason") for d in dead} <= {"unprocessable: ValidationError"}
    assert all(d.topic == "disputes.invalid" and d.value == records[int(d.header("dlq_source_offset"))].value for d in dead)
    assert pipeline.calls <= calls


async def test_an_outage_is_raised_whole_and_nothing_is_dead_lettered():
    records = [Record("disputes.reported", b"r", offset=n) for n in range(4)]
    pipeline, dead = Pipeline({0, 1, 2, 3}, OperationalError("stmt", {}, _Driver())), []

    async def publish(outgoing):
        dead.extend(outgoing)

    with pytest.raises(OperationalError):
        await isolate_poison(records, pipeline, publish, "disputes.invalid", lambda: None, source="/fengqiao/triage")
    assert dead == [] and pipeline.calls == 1
