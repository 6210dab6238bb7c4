"""Triage's own store: processed event ids (dedupe) and hashed sightings (correlation), batched per call."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.runtime.store import aware, insert_ignoring_duplicates, utc
from services.triage.correlation import Sighting

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
    Column("key_hash", String(64), primary_key=True),
    Column("dispute_id", String(64), primary_key=True),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Index("ix_triage_sightings_reported_at", "reported_at"),
)

# SQLite's IN lists are limited; PostgreSQL is fine either way.
_CHUNK = 500


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


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

    async def create(self) -> None:
        """Create the tables if they do not exist."""
        async with self.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)

    async def already_processed(self, event_ids: list[str]) -> set[str]:
        """Return which of these event ids were processed before."""
        found: set[str] = set()
        async with self.engine.connect() as connection:
            for chunk in _chunks(event_ids):
                rows = await connection.execute(select(processed.c.event_id).where(processed.c.event_id.in_(chunk)))
                found.update(row.event_id for row in rows)
        return found

    async def sightings_since(self, kind: str, keys: list[str], since: datetime) -> list[Sighting]:
        """Return the sightings of these hashed keys reported at or after `since`."""
        found = []
        async with self.engine.connect() as connection:
            for chunk in _chunks(keys):
                rows = await connection.execute(
                    select(sightings).where(
                        sightings.c.kind == kind, sightings.c.key_hash.in_(chunk), sightings.c.reported_at >= utc(since)
                    )
                )
                found.extend(Sighting(r.kind, r.key_hash, r.dispute_id, aware(r.reported_at)) for r in rows)
        return found

    async def record(self, done: list[Processed], seen: list[Sighting]) -> None:
        """Record a batch's processed ids and sightings in one transaction; repeats change nothing."""
        async with self.engine.begin() as connection:
            await insert_ignoring_duplicates(
                connection,
                processed,
                [{"event_id": p.event_id, "output_event_id": p.output_event_id, "processed_at": utc(p.processed_at)} for p in done],
            )
            await insert_ignoring_duplicates(
                connection,
                sightings,
                [{"kind": s.kind, "key_hash": s.key, "dispute_id": s.dispute_id, "reported_at": utc(s.reported_at)} for s in seen],
            )

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
        return gone_ids.rowcount, gone_sightings

