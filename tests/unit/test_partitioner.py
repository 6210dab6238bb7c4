"""The batch publisher places records as aiokafka's own partitioner would, with its faster murmur2."""

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2 as aiokafka_murmur2

from services.runtime.kafka import murmur2, partition_of

RANDOM = random.Random(7)
KEYS = [bytes(range(n)) for n in range(65)] + [bytes(RANDOM.randrange(256) for _ in range(RANDOM.randrange(1, 200))) for _ in range(2000)]
KEYS += ["纠纷-2026-0001".encode(), b"\xff" * 13, b"dsp-20261130-00001234"]


def test_murmur2_equals_aiokafka_s_on_every_short_length_and_random_keys():
    assert [murmur2(key) for key in KEYS] == [aiokafka_murmur2(key) for key in KEYS]


@pytest.mark.parametrize("partitions", [(0,), (0, 1), (0, 1, 2, 3), tuple(range(12))])
def test_keyed_records_land_where_the_default_partitioner_puts_them(partitions):
    default = DefaultPartitioner()
    assert [partition_of(key, partitions) for key in KEYS] == [default(key, list(partitions), list(partitions)) for key in KEYS]


def test_unkeyed_records_spread_over_every_partition():
    assert {partition_of(None, (0, 1, 2)) for _ in range(300)} == {0, 1, 2}
