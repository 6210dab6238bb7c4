"""Triage's own store: processed event ids (dedupe) and hashed sightings (correlation), batched per call."""

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, delete, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.store import (
    IGNORE_DUPLICATES,
    Insert,
    aware,
    create_schema,
    insert_beside,
    numbered_parameters,
    parameter_marks,
    present,
    time_binder,
    utc,
)
from services.triage.correlation import MATTER, PARTY, Answers, MatterProbe, Probe, Sighting, legacy_matter_key

metadata = MetaData()

processed = Table(
    "triage_processed",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("output_event_id", String(64), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, index=True),
)

sightings = Table(
    "triage_sightings",
    metadata,
    Column("kind", String(16), primary_key=True),
    # The first 64 bits of the key's hash (`stored_key`): all 64 hex characters made the primary key's index twice
    # the size, and a batch's random inserts into it, each a page of the log at the commit, its largest write.
    Column("key_hash", String(64), primary_key=True),
    Column("dispute_id", String(64), primary_key=True),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    # A party's sighting also says what the dispute was about and where (its matter), so the same matter is found
    # among the party's sightings; other kinds leave them empty, as do sightings stored before these columns.
    # The first report of a dispute sets them: a later event of the same dispute id naming another category or place
    # adds no second matter (it did when each matter key was a row of its own; reassessments keep both fields).
    Column("category", String(64), nullable=True),
    Column("place", Text, nullable=True),
)
# Added to stores made before a party's sighting carried its matter; nullable, added alike on SQLite and PostgreSQL.
_MATTER_COLUMNS = ("category", "place")
# No index on reported_at alone: PostgreSQL's generic plan for the probes, cached while the table was
# empty, chose it and scanned every key's sightings in the window (two triage instances crawled at 129
# reports/s). The primary key serves the probes; the hourly purge reads the table through.
_RETIRED_INDEX = "ix_triage_sightings_reported_at"

# SQLite's compound selects are limited; PostgreSQL is fine either way.
_PROBES_PER_QUERY = 200
# Statements are padded to these sizes: each driver keeps a few prepared statements instead of one per batch size.
_STATEMENT_SIZES = (8, 32, 64, 128, _PROBES_PER_QUERY)
# Keys looked up at once by `_named`, and the sizes its statements are padded to (a repeated key changes nothing).
_KEYS_PER_QUERY = 500
_KEY_STATEMENT_SIZES = (8, 32, 128, _KEYS_PER_QUERY)


# What the store keeps of a key: the first 64 bits of its hash, in hex.
STORED_KEY_LENGTH = 16


def stored_key(key: str) -> str:
    """Return what the store keeps of a hashed key (hex): its first 16 characters, the hash's first 64 bits.

    Keys are HMAC-SHA256 digests, uniformly spread: two of a county's ten million identifiers share their first 64 bits
    with a chance of about 3 in a million, and only a repeat-party or same-employer flag could follow from it.
    """
    return key[:STORED_KEY_LENGTH]


def _create(connection: Connection) -> None:
    metadata.create_all(connection)
    connection.execute(text(f"DROP INDEX IF EXISTS {_RETIRED_INDEX}"))  # stores made before it was retired
    present_columns = {column["name"] for column in inspect(connection).get_columns(sightings.name)}
    for name in _MATTER_COLUMNS:
        if name not in present_columns:
            connection.exec_driver_sql(f"ALTER TABLE {sightings.name} ADD COLUMN {name} {sightings.c[name].type.compile(connection.dialect)}")
    _shorten_keys(connection)


def _shorten_keys(connection: Connection) -> None:
    """Keep only the stored part of keys written whole: by a version before `stored_key`, or by one still running beside
    this one during an upgrade (same table and column, so both keep working). Done at every start, each statement a scan
    of the table (about 20 ms at 200,000 sightings on SQLite): each long row is copied short, then dropped only where
    its short copy is there, so a row an older instance writes meanwhile waits for the next start, and a start cut
    short changes nothing."""
    table, short = sightings.name, STORED_KEY_LENGTH
    connection.exec_driver_sql(
        f"INSERT INTO {table} (kind, key_hash, dispute_id, reported_at, category, place) SELECT kind, substr(key_hash, 1, {short}),"
        f" dispute_id, reported_at, category, place FROM {table} WHERE length(key_hash) > {short}{IGNORE_DUPLICATES}"
    )
    connection.exec_driver_sql(
        f"DELETE FROM {table} WHERE length(key_hash) > {short} AND EXISTS (SELECT 1 FROM {table} AS copied WHERE copied.kind = {table}.kind"
        f" AND copied.key_hash = substr({table}.key_hash, 1, {short}) AND copied.dispute_id = {table}.dispute_id)"
    )


def _holds_legacy_matters(connection: Connection) -> bool:
    # One seek on the primary key's kind prefix.
    return connection.execute(select(sightings.c.kind).where(sightings.c.kind == MATTER).limit(1)).first() is not None


@lru_cache(maxsize=2 * len(_STATEMENT_SIZES))
def _matter_sql(count: int, numbered: bool) -> str:
    # As `_probes_sql`, on the party's sightings: a field the rules do not compare is bound as NULL and compares the
    # row with itself. A sighting stored before the columns (NULL) is no matter of anything: its legacy row answers.
    marks = parameter_marks(numbered, 7 * count)
    arms = []
    for n in range(count):
        key, since, until, dispute, category, place, limit = marks[7 * n : 7 * n + 7]
        arms.append(
            f"SELECT {n} AS probe, dispute_id FROM (SELECT dispute_id FROM triage_sightings WHERE kind = '{PARTY}' AND key_hash = {key}"
            f" AND reported_at BETWEEN {since} AND {until} AND dispute_id != {dispute}"
            f" AND category = COALESCE({category}, category) AND place = COALESCE({place}, place) LIMIT {limit}) AS m{n}"
        )
    return " UNION ALL ".join(arms)


async def _matters(connection: Any, asked: list[MatterProbe]) -> Answers:
    """Answer each same-matter probe from its party's sightings of the same category and place in its window."""
    return await _ask(
        connection, asked, _matter_sql,
        lambda p, bind: [stored_key(p.party), bind(p.since), bind(p.until), p.dispute_id, p.category, p.place, p.limit],
        lambda p: (p.event_id, MATTER, p.matter),
    )


async def _ask(
    connection: Any,
    asked: list[Any],
    sql: Callable[[int, bool], str],
    values: Callable[[Any, Callable[[datetime], Any]], list[Any]],
    answer: Callable[[Any], tuple[str, str, str]],
) -> Answers:
    """Run probes in statements of a few padded sizes; collect the disputes each finds under its `answer` key.

    `values` gives a probe's parameters, its times bound by the binder it is handed, its limit last: padding repeats
    the chunk's last probe with a limit of 0, which matches nothing, so each driver keeps a few prepared statements
    instead of one per batch size.
    """
    found: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    numbered, bind = numbered_parameters(connection), time_binder(connection)
    for start in range(0, len(asked), _PROBES_PER_QUERY):
        chunk = asked[start : start + _PROBES_PER_QUERY]
        size = next(size for size in _STATEMENT_SIZES if size >= len(chunk))
        parameters: list[Any] = []
        for probe in chunk:
            parameters += values(probe, bind)
        last = values(chunk[-1], bind)
        parameters += (last[:-1] + [0]) * (size - len(chunk))
        for number, dispute_id in await connection.exec_driver_sql(sql(size, numbered), tuple(parameters)):
            found[answer(chunk[number])].add(dispute_id)
    return {key: frozenset(ids) for key, ids in found.items()}


@lru_cache(maxsize=2 * len(_STATEMENT_SIZES))
def _probes_sql(count: int, numbered: bool) -> str:
    # Written once per size and sent to the driver as text: SQLAlchemy's processing of six parameters
    # per probe cost more than the query. The limit stops each index scan early, so a much-named key
    # costs no more than a rare one.
    marks = parameter_marks(numbered, 6 * count)
    arms = []
    for n in range(count):
        kind, key, since, until, dispute, limit = marks[6 * n : 6 * n + 6]
        arms.append(
            f"SELECT {n} AS probe, dispute_id FROM (SELECT dispute_id FROM triage_sightings WHERE kind = {kind} AND key_hash = {key}"
            f" AND reported_at BETWEEN {since} AND {until} AND dispute_id != {dispute} LIMIT {limit}) AS w{n}"
        )
    return " UNION ALL ".join(arms)


@lru_cache(maxsize=2 * len(_KEY_STATEMENT_SIZES))
def _named_sql(count: int, numbered: bool) -> str:
    # Each key is one seek on the primary key's (kind, key_hash) prefix. PostgreSQL gets one array and looks each
    # key up on its own, as `present` does: a generic plan cached on an empty store must not scan the table.
    if numbered:
        return (
            "SELECT wanted.key FROM unnest($2::text[]) AS wanted(key) CROSS JOIN LATERAL"
            " (SELECT 1 FROM triage_sightings WHERE kind = $1 AND key_hash = wanted.key LIMIT 1) AS found"
        )
    return f"SELECT DISTINCT key_hash FROM triage_sightings WHERE kind = ? AND key_hash IN ({', '.join(parameter_marks(False, count))})"


async def _named(connection: Any, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Return which of these (kind, key) pairs the store holds any sighting of, whenever seen."""
    # Keys sharing a stored key (64 bits) are one to the store: each is named if their rows are.
    by_kind: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for kind, key in sorted(keys):
        by_kind[kind].setdefault(stored_key(key), []).append(key)
    numbered, found = numbered_parameters(connection), set()
    for kind, keyed in by_kind.items():
        wanted = list(keyed)
        for start in range(0, len(wanted), _KEYS_PER_QUERY):
            chunk = wanted[start : start + _KEYS_PER_QUERY]
            size = next(size for size in _KEY_STATEMENT_SIZES if size >= len(chunk))
            parameters = (kind, chunk) if numbered else (kind, *chunk, *chunk[-1:] * (size - len(chunk)))
            for (key,) in await connection.exec_driver_sql(_named_sql(size, numbered), parameters):
                found.update((kind, named) for named in keyed[key])
    return found


async def _windowed(connection: Any, asked: list[Probe]) -> Answers:
    """Answer each probe from the sightings of its key in its window: `other_disputes` without first asking which keys are named."""
    return await _ask(
        connection, asked, _probes_sql,
        lambda p, bind: [p.kind, stored_key(p.key), bind(p.since), bind(p.until), p.dispute_id, p.limit],
        lambda p: (p.event_id, p.kind, p.key),
    )


def _in_key_order(rows: list[tuple], column: int) -> list[tuple]:
    # The keys are hashes and random ids: in arrival order each row lands on another page of the key's B-tree;
    # in key order the pages are walked once (SQLite, 78,000 sightings: 0.46 -> 0.33 s). Sorted on the column that
    # tells keys apart (the hash, not the whole key: a third of the sort's time), and stably, so of two rows with one
    # key the first still wins, as it did in arrival order.
    return sorted(rows, key=itemgetter(column))


@dataclass(frozen=True)
class Processed:
    """A consumed event and the output it produced."""

    event_id: str
    output_event_id: str
    processed_at: datetime


class TriageStore:
    """Reads and writes a batch at a time: one query per kind, one transaction per batch."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        # Whether the store may still hold matter rows of their own, written before a party's sighting carried its
        # matter: until the purge has aged them out, same-matter probes ask them too. Told by `create`.
        self.legacy_matters = True

    async def create(self) -> None:
        """Create the tables if they do not exist, or add the columns a store from before lacks."""
        await create_schema(self.engine, _create)
        async with self.engine.connect() as connection:
            self.legacy_matters = await connection.run_sync(_holds_legacy_matters)

    async def already_processed(self, event_ids: list[str]) -> set[str]:
        """Return which of these event ids were processed before."""
        async with self.engine.connect() as connection:
            return await present(connection, processed.c.event_id, event_ids)

    async def other_disputes(self, asked: list[Probe]) -> Answers:
        """Answer probes: per probe, up to its limit of other disputes that named its key in its window."""
        async with self.engine.connect() as connection:
            # Most keys are new people (95 % of the probes of 50,000 simulator reports found nothing): one seek per key
            # tells which keys the store names at all, and only their probes walk a window (a seek costs a third of a probe).
            named = await _named(connection, {(p.kind, p.key) for p in asked})
            return await _windowed(connection, [p for p in asked if (p.kind, p.key) in named])

    async def same_matters(self, asked: list[MatterProbe]) -> Answers:
        """Answer same-matter probes: per probe, up to its limit of other disputes that named its party with its category and place."""
        async with self.engine.connect() as connection:
            found = await _matters(connection, asked)
            if not self.legacy_matters:
                return found
            legacy = [Probe(p.event_id, MATTER, legacy_matter_key(p.matter), p.since, p.until, p.dispute_id, p.limit) for p in asked]
            matter_of = {(p.event_id, legacy_matter_key(p.matter)): p.matter for p in asked}
            for (event_id, _, key), disputes in (await _windowed(connection, legacy)).items():
                matter = matter_of[event_id, key]
                found[event_id, MATTER, matter] = found.get((event_id, MATTER, matter), frozenset()) | disputes
            return found

    async def record(self, done: list[Processed], seen: list[Sighting], released: Awaitable[None] | None = None) -> None:
        """Record a batch's processed ids and sightings in one transaction, committed once `released` (if given) completes; repeats change nothing."""
        async with self.engine.begin() as connection:
            bind = time_binder(connection)
            await insert_beside(connection, [
                Insert(
                    processed, ["event_id", "output_event_id", "processed_at"],
                    _in_key_order([(p.event_id, p.output_event_id, bind(p.processed_at)) for p in done], 0), IGNORE_DUPLICATES,
                ),
                Insert(
                    sightings, ["kind", "key_hash", "dispute_id", "reported_at", "category", "place"],
                    _in_key_order([(s.kind, stored_key(s.key), s.dispute_id, bind(s.reported_at), s.category, s.place) for s in seen], 1),
                    IGNORE_DUPLICATES,
                ),
            ])
            if released is not None:
                await released

    async def purge(self, now: datetime, dedupe_days: int, sighting_days: int) -> tuple[int, int]:
        """Forget processed ids older than the dedupe window and sightings older than the widest window.

        Sightings age on report time (the newest report stored), so replays of history keep their windows.
        """
        async with self.engine.begin() as connection:
            gone_ids = await connection.execute(delete(processed).where(processed.c.processed_at < utc(now) - timedelta(days=dedupe_days)))
            newest = (await connection.execute(select(func.max(sightings.c.reported_at)))).scalar()
            gone_sightings = 0
            if newest is not None:
                cutoff = aware(newest) - timedelta(days=sighting_days)
                gone_sightings = (await connection.execute(delete(sightings).where(sightings.c.reported_at < cutoff))).rowcount
            if self.legacy_matters:
                self.legacy_matters = await connection.run_sync(_holds_legacy_matters)
        return gone_ids.rowcount, gone_sightings

