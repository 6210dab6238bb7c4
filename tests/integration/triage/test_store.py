"""Triage's store keeps its correlation probes on the key's index, whatever plan the database caches."""

from sqlalchemy import inspect, text

from services.runtime.store import create_engine
from services.triage.store import TriageStore, _probes_sql
from tests.support.postgres import generic_plan


async def test_probes_use_the_key_index_even_in_a_generic_plan_made_on_an_empty_store(empty_postgres_url):
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
