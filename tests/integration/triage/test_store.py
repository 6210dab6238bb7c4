"""Triage's store keeps its correlation probes on the key's index, whatever plan the database caches."""

import hashlib
import json
import random
from datetime import datetime, timedelta, timezone

from sqlalchemy import inspect, text

from schemas.disputes import DisputeReported
from services.runtime.store import create_engine
from services.triage.correlation import (
    EMPLOYER,
    MATTER,
    PARTY,
    Hasher,
    Probe,
    Sighting,
    legacy_matter_key,
    matter_probes,
    probes,
    same_matter,
    subject_of,
)
from services.triage.ruleset import DEFAULT_RULES, SameMatterSpec, load_ruleset
from services.triage.store import STORED_KEY_LENGTH, TriageStore, _matter_sql, _named_sql, _probes_sql, _windowed
from tests.support.postgres import generic_plan
from tests.support.samples import report_payload


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
    matters = ", ".join(f"'h{n}', now() - interval '30 days', now(), 'D-{n}', 'neighbor', NULL, 5" for n in range(8))
    plan = await generic_plan(url, _matter_sql(8, numbered=True), matters)
    assert plan.count("Index Scan using triage_sightings_pkey") == 8, plan  # the same matter too starts from the party's key
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
    # Whole hashes, as the service asks with: the store keeps their first 16 characters and answers under the whole key.
    kinds, keys = (PARTY, EMPLOYER, MATTER), [hashlib.sha256(f"k{n}".encode()).hexdigest() for n in range(61)]
    never_seen = keys.pop()
    seen = [
        Sighting(rng.choice(kinds), rng.choice(keys), f"D-{rng.randrange(40)}", start + timedelta(days=rng.randrange(60), hours=rng.randrange(24)))
        for _ in range(400)
    ]
    asked = [
        Probe(f"e{n}", kind, key, since, since + timedelta(days=rng.choice((1, 7, 30, 90))), f"D-{rng.randrange(45)}", rng.choice((1, 3, 5)))
        for n in range(700)
        for kind, key, since in [(rng.choice(kinds), rng.choice(keys + [never_seen] * 20), start + timedelta(days=rng.randrange(-10, 70)))]
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


async def test_a_store_from_before_party_matters_gains_the_columns_and_keeps_finding_its_matters(database_url):
    # Stored then: the party's sighting without its matter, and the matter as a row of its own under its hashed key.
    # After the upgrade the same matter is still found, from that row, until the purge has aged it out.
    hasher, spec = Hasher(b"test-key-0123456789abcdef"), SameMatterSpec()
    earlier, again = (
        DisputeReported.model_validate_json(json.dumps(report_payload(
            event_id=f"e{n}", dispute_id=dispute, reported_at=f"2026-03-0{1 + n}T09:00:00+08:00", category="neighbor",
            parties=[{"role": "complainant", "kind": "person", "name": "王某", "phone": "13800000001"}],
        )))
        for n, dispute in enumerate(("A", "B"))
    )
    correlation = load_ruleset(DEFAULT_RULES).spec.correlation.model_copy(update={"same_matter": spec})
    before = subject_of(earlier.event_id, earlier, hasher, correlation)
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "CREATE TABLE triage_sightings (kind VARCHAR(16) NOT NULL, key_hash VARCHAR(64) NOT NULL, dispute_id VARCHAR(64) NOT NULL,"
                " reported_at TIMESTAMP WITH TIME ZONE NOT NULL, PRIMARY KEY (kind, key_hash, dispute_id))"
            )
            rows = [(PARTY, k) for k in before.parties] + [(MATTER, legacy_matter_key(m)) for m in before.matters]
            await connection.execute(
                text("INSERT INTO triage_sightings VALUES (:kind, :key, 'A', :at)"),
                [{"kind": kind, "key": key, "at": earlier.reported_at} for kind, key in rows],
            )
        store = TriageStore(engine)
        await store.create()
        async with engine.connect() as connection:
            columns = await connection.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns("triage_sightings")})
            longest = (await connection.exec_driver_sql("SELECT max(length(key_hash)) FROM triage_sightings")).scalar()
        assert {"category", "place"} <= columns and store.legacy_matters and longest == STORED_KEY_LENGTH
        last = [subject_of(again.event_id, again, hasher, correlation)]
        stored = await store.other_disputes(probes(last, correlation))
        stored |= await store.same_matters(matter_probes(last, stored, correlation))
        assert same_matter(last, stored, correlation)[again.event_id] == ("A",)
        await store.record([], last[0].sightings())
        await store.purge(again.reported_at, 1, 0)  # the legacy rows age out, the newest report's stay
        assert not store.legacy_matters
    finally:
        await engine.dispose()


async def test_keys_written_whole_by_an_older_version_are_stored_short_once_at_the_next_start_and_found(database_url):
    # An instance of the version before, still running during an upgrade, writes whole keys into the same column; a
    # start cut short left one row both whole and short. The next start keeps each sighting once, short.
    at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    keys = [hashlib.sha256(f"p{n}".encode()).hexdigest() for n in range(5)]
    engine = create_engine(database_url)
    try:
        store = TriageStore(engine)
        await store.create()
        await store.record([], [Sighting(PARTY, keys[0], "D-0", at, "neighbor", "x")])
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO triage_sightings VALUES ('party', :key, :dispute, :at, 'neighbor', 'x')"),
                [{"key": k, "dispute": f"D-{n}", "at": at} for n, k in enumerate(keys)],
            )
        await TriageStore(engine).create()
        async with engine.connect() as connection:
            rows = (await connection.exec_driver_sql("SELECT key_hash, dispute_id FROM triage_sightings ORDER BY dispute_id")).all()
        assert rows == [(k[:STORED_KEY_LENGTH], f"D-{n}") for n, k in enumerate(keys)]
        asked = [Probe(f"e{n}", PARTY, k, at - timedelta(days=1), at, "D-new", 5) for n, k in enumerate(keys)]
        assert await store.other_disputes(asked) == {(f"e{n}", PARTY, k): frozenset({f"D-{n}"}) for n, k in enumerate(keys)}
    finally:
        await engine.dispose()
