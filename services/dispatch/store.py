"""Dispatch's own store: disputes, work orders, processed event ids, pinned routings and parked updates, migrated with Alembic at start.

Personal data lives only in each dispute's report (and, for at most `park_seconds`, in parked updates' notes):
`purge` erases a report once its dispute has been settled for the retention. The reports taken hold figures only
(ids, channel, date, outcome), so retention leaves them: the statistics report counts reports received from them.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger, Column, DateTime, Index, Integer, LargeBinary, MetaData, String, Table, Text, bindparam, delete, exists, func, select, tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from schemas.disputes import DisputeReported, History
from services.dispatch.lifecycle import OPEN, Dispute, Effects, Order
from services.runtime.retention import Kept, RetentionPlan
from services.runtime.store import (
    IGNORE_DUPLICATES, Insert, aware, create_schema, insert_beside, insert_ignoring_duplicates, present, time_binder, utc,
)

MIGRATIONS = Path(__file__).parent / "migrations"

Pinned = tuple[str, str]  # a routing table's or holidays file's id and text
Pin = tuple[str, str | None]  # an input's routing id and holidays id
_DISPUTE_COLUMNS = ["dispute_id", "attempt", "level", "urgency", "report", "history", "routing_id", "holidays_id", "resolved_at"]
_ORDER_COLUMNS = ["work_order_id", "dispute_id", "department", "role", "attempt", "level", "status", "issued_at", "due_at"]

metadata = MetaData()
disputes = Table(
    "dispatch_disputes",
    metadata,
    Column("dispute_id", String(64), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("urgency", String(16), nullable=False),
    Column("report", Text, nullable=False),
    Column("history", Text, nullable=False),
    Column("routing_id", String(64), nullable=True),
    Column("holidays_id", String(64), nullable=True),
    # When a retention pass first found the dispute settled (no open order), and when its report was erased.
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("erased_at", DateTime(timezone=True), nullable=True),
    # When the current attempt was resolved: a report of the case within the routing file's window reopens it.
    Column("resolved_at", DateTime(timezone=True), nullable=True),
)
# Disputes reported under another platform's id that joined a case: a later report under that id finds the case.
case_aliases = Table(
    "dispatch_case_aliases",
    metadata,
    Column("dispute_id", String(64), primary_key=True),
    Column("case_id", String(64), nullable=False),
)
# Every report dispatch took, by the id of its report (its gradings are deduplicated by that id): the case it went to
# and what it did there. Figures only, never personal data, so kept whatever the retention: reports received vs cases.
reports_taken = Table(
    "dispatch_reports",
    metadata,
    Column("event_id", String(120), primary_key=True),
    Column("case_id", String(64), nullable=False),
    Column("dispute_id", String(64), nullable=False),
    Column("source", String(32), nullable=False),
    Column("reported_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(16), nullable=False),  # new, joined, regraded, reopened or renewed
    Index("ix_dispatch_reports_case", "case_id"),
)
# The hourly retention pass reads only disputes not yet erased: after years they are the few.
kept_disputes = Index(
    "ix_dispatch_disputes_kept", disputes.c.dispute_id,
    sqlite_where=disputes.c.erased_at.is_(None), postgresql_where=disputes.c.erased_at.is_(None),
)
orders = Table(
    "dispatch_orders",
    metadata,
    Column("work_order_id", String(64), primary_key=True),
    Column("dispute_id", String(64), nullable=False),
    Column("department", String(32), nullable=False),
    Column("role", String(8), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
)
processed = Table(
    "dispatch_processed",
    metadata,
    Column("event_id", String(120), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
    # A processed update's content: the same id again with other content is a conflict, not a duplicate.
    Column("content_hash", String(64), nullable=True),
)

routing_tables = Table(
    "dispatch_routing_tables",
    metadata,
    Column("routing_id", String(64), primary_key=True),
    Column("body", Text, nullable=False),
)
# Holidays files by id, as routing tables: a deadline is walked on the file its attempt was first routed with.
holiday_files = Table(
    "dispatch_holiday_files",
    metadata,
    Column("holidays_id", String(64), primary_key=True),
    Column("body", Text, nullable=False),
)
# The routing and holidays an input was first routed by, held from before its outputs are published until its effects commit.
routing_pins = Table(
    "dispatch_routing_pins",
    metadata,
    Column("input_key", String(80), primary_key=True),
    Column("routing_id", String(64), nullable=False),
    Column("pinned_at", DateTime(timezone=True), nullable=False),
    Column("holidays_id", String(64), nullable=True),
)

# Updates whose order was not yet visible, by where they were consumed, kept until it appears or their deadline passes.
parked_updates = Table(
    "dispatch_parked_updates",
    metadata,
    Column("source_topic", String(255), primary_key=True),
    Column("source_partition", Integer, primary_key=True),
    Column("source_offset", BigInteger, primary_key=True),
    Column("record_key", LargeBinary, nullable=True),
    Column("value", LargeBinary, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class ParkedUpdate:
    """A parked update: the consumed record's fields the pipeline and its dead letters read, and when it was first seen."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    first_seen: datetime
    timestamp: int = 0


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _dispute(row) -> Dispute:
    return Dispute(
        row.dispute_id, row.attempt, row.level, row.urgency,
        DisputeReported.model_validate_json(row.report), History.model_validate_json(row.history), row.routing_id, row.holidays_id,
        aware(row.resolved_at) if row.resolved_at is not None else None,
    )


def _order(row) -> Order:
    return Order(
        row.work_order_id, row.dispute_id, row.department, row.role, row.attempt, row.level, row.status,
        aware(row.issued_at), aware(row.due_at),
    )


def _dispute_row(d: Dispute, encode_report: Callable[[DisputeReported], bytes], moment: Callable[[datetime], Any]) -> tuple:
    """Return a dispute's values in the order of `_DISPUTE_COLUMNS`, its time as `moment` binds it."""
    return (
        d.dispute_id, d.attempt, d.level, d.urgency, encode_report(d.report).decode(), d.history.model_dump_json(), d.routing_id,
        d.holidays_id, moment(d.resolved_at) if d.resolved_at is not None else None,
    )


def _retained():
    needed = exists().where(orders.c.dispute_id == disputes.c.dispute_id, orders.c.status.in_(OPEN))
    return select(disputes.c.dispute_id, disputes.c.settled_at, needed.label("needed")).where(disputes.c.erased_at.is_(None))


def _kept(rows) -> list[Kept]:
    return [Kept(row.dispute_id, bool(row.needed), aware(row.settled_at) if row.settled_at is not None else None) for row in rows]


async def _lookup(connection: AsyncConnection, key: Column, value: Column, keys: list[str]) -> dict[str, str]:
    """Map each of these keys that the key column holds to its value."""
    if not keys:
        return {}
    return {row[0]: row[1] for row in await connection.execute(select(key, value).where(key.in_(keys)))}


class DispatchStore:
    """Loads the state a batch needs in a few queries and writes its effects in the same transaction."""

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None):
        self.engine = engine
        self.reader = reader or engine  # whole-table counts: off the event loop where the engine is on it

    async def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration."""
        await create_schema(self.engine, _upgrade)

    @staticmethod
    async def processed_ids(connection: AsyncConnection, event_ids: list[str]) -> set[str]:
        """Return which of these (namespaced) event ids were processed before."""
        return await present(connection, processed.c.event_id, event_ids)

    @staticmethod
    async def processed_hashes(connection: AsyncConnection, keys: list[str]) -> dict[str, str | None]:
        """Return the content hash of each of these processed keys (None for rows written before hashes)."""
        return await _lookup(connection, processed.c.event_id, processed.c.content_hash, keys)

    @staticmethod
    async def load_parked(connection: AsyncConnection) -> list[ParkedUpdate]:
        """Load and lock the parked updates in order of first sight; on PostgreSQL skip those another instance holds."""
        query = (
            select(parked_updates)
            .order_by(parked_updates.c.first_seen, parked_updates.c.source_topic, parked_updates.c.source_partition, parked_updates.c.source_offset)
            .with_for_update(skip_locked=True)
        )
        return [
            ParkedUpdate(r.source_topic, r.source_partition, r.source_offset, r.record_key, r.value, aware(r.first_seen))
            for r in await connection.execute(query)
        ]

    @staticmethod
    async def park(connection: AsyncConnection, records: list, now) -> None:
        """Park these consumed updates, keeping the first sight of any parked before."""
        rows = [
            {"source_topic": r.topic, "source_partition": r.partition, "source_offset": r.offset, "record_key": r.key, "value": r.value or b"",
             "first_seen": utc(now)}
            for r in records
        ]
        await insert_ignoring_duplicates(connection, parked_updates, rows)

    @staticmethod
    async def unpark(connection: AsyncConnection, records: list[ParkedUpdate]) -> None:
        """Drop parked updates that were applied, refused or dead-lettered in this transaction."""
        if records:
            where = tuple_(parked_updates.c.source_topic, parked_updates.c.source_partition, parked_updates.c.source_offset)
            await connection.execute(delete(parked_updates).where(where.in_([(r.topic, r.partition, r.offset) for r in records])))

    @staticmethod
    async def load_aliases(connection: AsyncConnection, dispute_ids: list[str]) -> dict[str, str]:
        """Return the case each of these ids joined, for those that joined one."""
        return await _lookup(connection, case_aliases.c.dispute_id, case_aliases.c.case_id, dispute_ids)

    @staticmethod
    async def load_disputes(connection: AsyncConnection, dispute_ids: list[str]) -> dict[str, Dispute]:
        """Load and lock the disputes of a batch (row locks on PostgreSQL serialise instances), in id order."""
        if not dispute_ids:
            return {}
        # Rows are locked as the sort emits them: two instances locking overlapping batches queue instead of deadlocking.
        query = select(disputes).where(disputes.c.dispute_id.in_(dispute_ids)).order_by(disputes.c.dispute_id).with_for_update()
        return {row.dispute_id: _dispute(row) for row in await connection.execute(query)}

    @staticmethod
    async def pin_routing(connection: AsyncConnection, input_keys: list[str], routing: Pinned, holidays: Pinned, now) -> dict[str, Pin]:
        """Pin these inputs to a routing table and a holidays file unless pinned before, keep both, and return every input's pin."""
        await insert_ignoring_duplicates(connection, routing_tables, [{"routing_id": routing[0], "body": routing[1]}])
        await insert_ignoring_duplicates(connection, holiday_files, [{"holidays_id": holidays[0], "body": holidays[1]}])
        rows = [{"input_key": k, "routing_id": routing[0], "holidays_id": holidays[0], "pinned_at": utc(now)} for k in input_keys]
        await insert_ignoring_duplicates(connection, routing_pins, rows)
        return await DispatchStore.load_pins(connection, input_keys)

    @staticmethod
    async def load_pins(connection: AsyncConnection, input_keys: list[str]) -> dict[str, Pin]:
        """Return the routing and holidays ids each of these inputs is pinned to (no holidays id: pinned before they were)."""
        if not input_keys:
            return {}
        query = select(routing_pins.c.input_key, routing_pins.c.routing_id, routing_pins.c.holidays_id).where(routing_pins.c.input_key.in_(input_keys))
        return {row.input_key: (row.routing_id, row.holidays_id) for row in await connection.execute(query)}

    @staticmethod
    async def unpin(connection: AsyncConnection, input_keys: list[str]) -> None:
        """Drop the pins of inputs whose effects commit with this transaction: their processed ids stand in for them."""
        if input_keys:
            await connection.execute(delete(routing_pins).where(routing_pins.c.input_key.in_(input_keys)))

    @staticmethod
    async def load_routing_texts(connection: AsyncConnection, routing_ids: list[str]) -> dict[str, str]:
        """Return the text of each of these routing tables."""
        return await _lookup(connection, routing_tables.c.routing_id, routing_tables.c.body, routing_ids)

    @staticmethod
    async def load_holidays_texts(connection: AsyncConnection, holidays_ids: list[str]) -> dict[str, str]:
        """Return the text of each of these holidays files."""
        return await _lookup(connection, holiday_files.c.holidays_id, holiday_files.c.body, holidays_ids)

    @staticmethod
    async def load_orders(connection: AsyncConnection, dispute_ids: list[str], order_ids: list[str]) -> dict[str, Order]:
        """Load every order of these disputes plus the named orders."""
        query = select(orders).where(orders.c.dispute_id.in_(dispute_ids) | orders.c.work_order_id.in_(order_ids))
        return {row.work_order_id: _order(row) for row in await connection.execute(query)}

    @staticmethod
    async def write(
        connection: AsyncConnection, effects: Effects, known_disputes: set[str], known_orders: set[str], done: list[str], now,
        encode_report: Callable[[DisputeReported], bytes], hashes: Mapping[str, str] | None = None,
    ) -> None:
        """Write a batch's effects and processed ids: one bulk update each for known rows, then the new rows' inserts beside the loop.

        The known ids are the rows the batch loaded, so no row is probed before it is written. `encode_report`
        gives the JSON of reports the batch has already published; `hashes` the content hash of processed ids that have one.
        """
        bind, hashes = time_binder(connection), hashes or {}
        known = [
            dict(zip(["key", *_DISPUTE_COLUMNS[1:]], _dispute_row(d, encode_report, utc)))
            for d in effects.disputes.values() if d.dispute_id in known_disputes
        ]
        if known:
            # A dispute written again is in use again: a new attempt brings its report back, so retention starts over.
            await connection.execute(
                update(disputes).where(disputes.c.dispute_id == bindparam("key"))
                .values({**{c: bindparam(c) for c in _DISPUTE_COLUMNS[1:]}, "settled_at": None, "erased_at": None}),
                known,
            )
        changed = [{"key": o.work_order_id, "status": o.status, "role": o.role} for o in effects.orders.values() if o.work_order_id in known_orders]
        if changed:
            await connection.execute(
                update(orders).where(orders.c.work_order_id == bindparam("key")).values(status=bindparam("status"), role=bindparam("role")),
                changed,
            )
        # The updates ran on the loop first: the inserts then have the connection to themselves on the writer thread.
        await insert_beside(connection, [
            Insert(disputes, _DISPUTE_COLUMNS, [
                _dispute_row(d, encode_report, bind) for d in effects.disputes.values() if d.dispute_id not in known_disputes
            ]),
            Insert(orders, _ORDER_COLUMNS, [
                (o.work_order_id, o.dispute_id, o.department, o.role, o.attempt, o.level, o.status, bind(o.issued_at), bind(o.due_at))
                for o in effects.orders.values()
                if o.work_order_id not in known_orders
            ]),
            Insert(case_aliases, ["dispute_id", "case_id"], list(effects.aliases.items()), IGNORE_DUPLICATES),
            Insert(reports_taken, ["event_id", "case_id", "dispute_id", "source", "reported_at", "outcome"], [
                (r.event_id, r.case_id, r.dispute_id, r.source, bind(r.reported_at), r.outcome) for r in effects.reports
            ], IGNORE_DUPLICATES),
            Insert(processed, ["event_id", "processed_at", "content_hash"], [(e, bind(now), hashes.get(e)) for e in done], IGNORE_DUPLICATES),
        ])

    async def open_orders_by_department(self) -> dict[str, int]:
        """Count open orders per department, for the gauge."""
        async with self.reader.connect() as connection:
            query = select(orders.c.department, func.count()).where(orders.c.status.in_(("issued", "accepted", "in_progress")))
            return {row[0]: row[1] for row in await connection.execute(query.group_by(orders.c.department))}

    @staticmethod
    async def retained_page(connection: AsyncConnection, after: str, limit: int) -> list[Kept]:
        """Return up to `limit` disputes not yet erased, in id order after `after`, each needed while one of its orders is open.

        A dispute with no open order is settled: dispatch never reads its report again. An update for it is refused
        as an illegal transition before the report is read, and a new attempt (a reassessment graded again, a
        rebound found at a revisit) brings the report with it. So dispatch's retention need not wait for revisits.
        """
        query = _retained().where(disputes.c.dispute_id > after).order_by(disputes.c.dispute_id).limit(limit)
        return _kept(await connection.execute(query))

    @staticmethod
    async def retained_locked(connection: AsyncConnection, dispute_ids: list[str]) -> list[Kept]:
        """Return these disputes if not yet erased, locked in id order as the batches lock them."""
        # A batch reopening one of them waits for the pass, or is waited for and seen.
        query = _retained().where(disputes.c.dispute_id.in_(dispute_ids)).order_by(disputes.c.dispute_id).with_for_update(of=disputes)
        return _kept(await connection.execute(query))

    @staticmethod
    async def reports(connection: AsyncConnection, dispute_ids: list[str]) -> dict[str, DisputeReported]:
        """Return the stored report of each of these disputes."""
        texts = await _lookup(connection, disputes.c.dispute_id, disputes.c.report, dispute_ids)
        return {key: DisputeReported.model_validate_json(text) for key, text in texts.items()}

    @staticmethod
    async def purge(connection: AsyncConnection, plan: RetentionPlan, erased: Mapping[str, DisputeReported], now) -> None:
        """Write a retention pass: stamp the settled, unstamp the reopened, replace the erased disputes' reports.

        `erased` holds the report each erased dispute keeps: the same figures, no personal data.
        """
        if plan.settled:
            await connection.execute(update(disputes).where(disputes.c.dispute_id.in_(plan.settled)).values(settled_at=utc(now)))
        if plan.reopened:
            await connection.execute(update(disputes).where(disputes.c.dispute_id.in_(plan.reopened)).values(settled_at=None))
        if erased:
            await connection.execute(
                update(disputes).where(disputes.c.dispute_id == bindparam("key")).values(report=bindparam("report"), erased_at=utc(now)),
                [{"key": key, "report": report.to_bytes().decode()} for key, report in erased.items()],
            )
