"""Triage's store keeps its correlation probes on the key's index, whatever plan the database caches."""

import random
from datetime import datetime, timedelta, timezone

from sqlalchemy import inspect, text

from services.runtime.store import create_engine
from services.triage.correlation import EMPLOYER, MATTER, PARTY, Probe, Sighting
from services.triage.store import TriageStore, _named_sql, _probes_sql, _windowed
from tests.support.postgres import generic_plan


async def test_probes_and_the_named_keys_lookup_use_the_key_index_even_in_a_generic_plan_made_on_an_empty_store(empty_postgres_url):
    # PostgreSQL may fix a generic plan after five executions; made while the table is empty, it scanned
    # the time index over the whole window and two triage instances crawled at 129 reports/s.
    url = empty_postgres_url
    engine = create_engine(url)
    try:
        await TriageStore(engine).create()
    finally:
        await engine.dispose()
    probes = _probes_sql(8, numbered=True)
    arguments = ", ".join(
        f"'employer', 'h{n}', now() - interval '30 days', now(), 'D-{n}', 5" for n in range(8)
    )
    plan = await generic_plan(url, probes, arguments)
    assert "ix_triage_sightings_reported_at" not in plan, plan
    assert plan.count("Index Scan using triage_sightings_pkey") == 8, plan  # each probe starts from its key
    named = await generic_plan(url, _named_sql(8, numbered=True), "'party', ARRAY['h1', 'h2']")
    assert "Index Only Scan using triage_sightings_pkey" in named and "Seq Scan on triage_sightings" not in named, named



async def test_a_store_made_with_the_time_index_loses_it_on_start(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'triage.db'}")
    try:
        await TriageStore(engine).create()
        async with engine.begin() as connection:
            await connection.execute(text("CREATE INDEX ix_triage_sightings_reported_at ON triage_sightings (reported_at)"))
        await TriageStore(engine).create()
        async with engine.connect() as connection:
            indexes = await connection.run_sync(lambda sync: inspect(sync).get_indexes("triage_sightings"))
        assert "ix_triage_sightings_reported_at" not in {index["name"] for index in indexes}
    finally:
        await engine.dispose()


async def test_probes_answer_as_the_windowed_probes_alone_do(database_url):
    # `other_disputes` first asks which keys the store names at all and walks windows only for those:
    # the answers must be what every probe's window gives when each is asked.
    rng = random.Random(7)
    start = datetime(2026, 3, 1, tzinfo=timezone.utc)
    kinds, keys = (PARTY, EMPLOYER, MATTER), [f"k{n:03d}" for n in range(60)]
    seen = [
        Sighting(rng.choice(kinds), rng.choice(keys), f"D-{rng.randrange(40)}", start + timedelta(days=rng.randrange(60), hours=rng.randrange(24)))
        for _ in range(400)
    ]
    asked = [
        Probe(f"e{n}", kind, key, since, since + timedelta(days=rng.choice((1, 7, 30, 90))), f"D-{rng.randrange(45)}", rng.choice((1, 3, 5)))
        for n in range(700)
        for kind, key, since in [(rng.choice(kinds), rng.choice(keys + ["never-seen"] * 20), start + timedelta(days=rng.randrange(-10, 70)))]
    ]
    engine = create_engine(database_url)
    try:
        store = TriageStore(engine)
        await store.create()
        await store.record([], seen)
        async with engine.connect() as connection:
            every_window = await _windowed(connection, asked)
        assert await store.other_disputes(asked) == every_window
        assert every_window and len(every_window) < len(asked)  # some probes find disputes, some do not
    finally:
        await engine.dispose()
