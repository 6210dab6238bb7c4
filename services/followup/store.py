"""Follow-up's own store: orders, disputes, durable timers, results, processed ids; and the closure figures.

Personal data lives only in each dispute's report: `purge` erases it once the dispute has been settled for the retention.
"""

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import (
    Boolean, Column, DateTime, Index, Integer, MetaData, String, Table, Text, bindparam, exists, func, inspect, select, update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select

from schemas.disputes import DisputeReported
from schemas.followups import FollowupResult
from services.followup.timers import Dispute, EventEffects, Timer, flared_up
from services.runtime.retention import Kept, RetentionPlan
from services.runtime.store import aware, create_schema, insert_ignoring_duplicates, present, utc

# The connection a transaction's work runs on: the handlers pass it along and never write SQL themselves.
Transaction = AsyncConnection

metadata = MetaData()
orders = Table(
    "followup_orders",
    metadata,
    Column("work_order_id", String(64), primary_key=True),
    Column("dispute_id", String(64), nullable=False, index=True),
    Column("department", String(32), nullable=False),
    Column("role", String(8), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(16), nullable=False),  # open, resolved, closed
    Column("due_at", DateTime(timezone=True), nullable=False),
)
disputes = Table(
    "followup_disputes",
    metadata,
    Column("dispute_id", String(64), primary_key=True),
    Column("attempt", Integer, nullable=False),
    Column("level", Integer, nullable=False),
    Column("report", Text, nullable=False),
    # When a retention pass first found the dispute settled, and when its report was erased.
    Column("settled_at", DateTime(timezone=True), nullable=True),
    Column("erased_at", DateTime(timezone=True), nullable=True),
)
# Added after the first schema: a store created before gets them at start (see _create).
_RETENTION_COLUMNS = ("settled_at", "erased_at")
# The hourly retention pass reads only disputes not yet erased: after years they are the few.
kept_disputes = Index(
    "ix_followup_disputes_kept", disputes.c.dispute_id,
    sqlite_where=disputes.c.erased_at.is_(None), postgresql_where=disputes.c.erased_at.is_(None),
)
timers = Table(
    "followup_timers",
    metadata,
    Column("followup_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("dispute_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("department", String(32), nullable=False),
    Column("work_order_id", String(64), nullable=True, index=True),
    Column("revisit_number", Integer, nullable=True),
    Column("regrades", Boolean, nullable=False, default=True),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("state", String(16), nullable=False),  # pending, fired, cancelled
    Column("fired_at", DateTime(timezone=True), nullable=True),
)
# The timer loop asks for the earliest pending timers at every look: with separate indexes on state and
# due_at, SQLite read every pending timer and sorted them, a cost growing with the backlog.
pending_by_due = Index("ix_followup_timers_state_due_at", timers.c.state, timers.c.due_at)
# The retention pass asks of each dispute whether a timer of its is pending: with an index on dispute_id alone,
# SQLite searched by state instead and read every pending timer per dispute (5 s a page of 500 under 100,000
# pending timers, on the event loop); with both columns, 2 ms.
pending_by_dispute = Index("ix_followup_timers_dispute_id_state", timers.c.dispute_id, timers.c.state)
# Indexes of earlier schemas, replaced by the two above.
_SUPERSEDED_INDEXES = ("ix_followup_timers_state", "ix_followup_timers_due_at", "ix_followup_timers_dispute_id")
resolutions = Table(
    "followup_resolutions",
    metadata,
    Column("event_id", String(64), primary_key=True),
    Column("dispute_id", String(64), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("department", String(32), nullable=False),
    Column("failed_mediations", Integer, nullable=False),
)
results = Table(
    "followup_results",
    metadata,
    # Keyed by revisit and event id: event ids are each department's own, so two departments' results may share one.
    Column("followup_id", String(64), primary_key=True),
    Column("event_id", String(64), primary_key=True),
    Column("satisfaction", Integer, nullable=False),
    Column("flared_up", Boolean, nullable=False),
)
# Every batch of results asks which of its revisits were answered before: without it, a scan of all results.
results_by_followup = Index("ix_followup_results_followup_id", results.c.followup_id)
processed = Table(
    "followup_processed",
    metadata,
    # 120: a result's key names its department besides its 64-character event id (result:{department}:{event_id}).
    Column("event_id", String(120), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)


def _timer(row) -> Timer:
    return Timer(
        row.followup_id, row.kind, row.dispute_id, row.attempt, row.department, aware(row.due_at),
        row.work_order_id, row.revisit_number, row.regrades, row.state,
    )


def timer_row(timer: Timer) -> dict:
    """Turn a timer into a pending row."""
    return {
        "followup_id": timer.followup_id, "kind": timer.kind, "dispute_id": timer.dispute_id, "attempt": timer.attempt,
        "department": timer.department, "work_order_id": timer.work_order_id, "revisit_number": timer.revisit_number,
        "regrades": timer.regrades, "due_at": utc(timer.due_at), "state": "pending", "fired_at": None,
    }


class FollowupStore:
    """Batched reads and writes of follow-up state; callers own the transaction."""

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None):
        self.engine = engine
        self.reader = reader or engine  # whole-table counts: off the event loop where the engine is on it

    async def create(self) -> None:
        """Create the tables if they do not exist."""
        await create_schema(self.engine, _create)

    @staticmethod
    async def processed_ids(connection: AsyncConnection, keys: list[str]) -> set[str]:
        """Return which of these keys were processed before."""
        return await present(connection, processed.c.event_id, keys)

    @staticmethod
    async def mark_processed(connection: AsyncConnection, keys: list[str], now: datetime) -> None:
        """Remember keys as processed; repeats are ignored."""
        await insert_ignoring_duplicates(connection, processed, [{"event_id": k, "processed_at": utc(now)} for k in keys])

    @staticmethod
    async def dispute_attempts(connection: AsyncConnection, dispute_ids: list[str]) -> dict[str, int]:
        """Return the newest attempt remembered of each known dispute."""
        if not dispute_ids:
            return {}
        rows = await connection.execute(select(disputes.c.dispute_id, disputes.c.attempt).where(disputes.c.dispute_id.in_(dispute_ids)))
        return {row.dispute_id: row.attempt for row in rows}

    @staticmethod
    async def write_events(connection: AsyncConnection, effects: EventEffects, known_disputes: set[str], done: list[str], now: datetime) -> None:
        """Write a batch of events' effects with a handful of bulk statements, and the processed ids.

        The order keeps their meaning: an order issued and closed in one batch ends with its timers cancelled,
        and revisits of an attempt that the same batch supersedes are cancelled with the earlier ones.
        `known_disputes` are the disputes the batch found remembered: those rows are updated, the others inserted.
        """
        await insert_ignoring_duplicates(connection, orders, [{
            "work_order_id": o.work_order_id, "dispute_id": o.dispute_id, "department": o.department,
            "role": o.role, "attempt": o.attempt, "status": "open", "due_at": utc(o.due_at),
        } for o in effects.orders])
        await _add_timers(connection, effects.timers)
        await _remember(connection, effects.disputes, known_disputes)
        if effects.closing:
            await connection.execute(
                update(orders).where(orders.c.work_order_id == bindparam("key")).values(status=bindparam("status")),
                [{"key": order, "status": status} for order, status in effects.closing.items()],
            )
            await _cancel(connection, timers.c.work_order_id.in_(list(effects.closing)))
        await insert_ignoring_duplicates(connection, resolutions, [{
            "event_id": r.event_id, "dispute_id": r.dispute_id, "attempt": r.attempt,
            "department": r.department, "failed_mediations": r.failed_mediations,
        } for r in effects.resolutions])
        for dispute_id, attempt in effects.superseded_revisits.items():
            await _cancel(connection, timers.c.dispute_id == dispute_id, timers.c.kind == "revisit", timers.c.attempt < attempt)
        await FollowupStore.mark_processed(connection, done, now)

    @staticmethod
    async def claim_due(connection: AsyncConnection, now: datetime, limit: int) -> list[Timer]:
        """Lock due pending timers; on PostgreSQL other instances skip them, so none fires twice."""
        query = (
            select(timers)
            .where(timers.c.state == "pending", timers.c.due_at <= utc(now))
            .order_by(timers.c.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [_timer(row) for row in await connection.execute(query)]

    @staticmethod
    async def next_due(connection: AsyncConnection) -> datetime | None:
        """Return when the earliest pending timer is due."""
        value = (await connection.execute(select(func.min(timers.c.due_at)).where(timers.c.state == "pending"))).scalar()
        return aware(value) if value is not None else None

    @staticmethod
    async def load_disputes(connection: AsyncConnection, dispute_ids: list[str]) -> dict[str, Dispute]:
        """Return the newest attempt, level and report of each known dispute."""
        if not dispute_ids:
            return {}
        rows = await connection.execute(select(disputes).where(disputes.c.dispute_id.in_(dispute_ids)))
        return {
            r.dispute_id: Dispute(r.dispute_id, r.attempt, r.level, DisputeReported.model_validate_json(r.report), r.erased_at is not None)
            for r in rows
        }

    @staticmethod
    async def resolved_attempts(connection: AsyncConnection, dispute_ids: list[str]) -> set[tuple[str, int]]:
        """Return the (dispute, attempt) pairs that were resolved."""
        if not dispute_ids:
            return set()
        rows = await connection.execute(select(resolutions.c.dispute_id, resolutions.c.attempt).where(resolutions.c.dispute_id.in_(dispute_ids)))
        return {(row.dispute_id, row.attempt) for row in rows}

    @staticmethod
    async def open_orders(connection: AsyncConnection, order_ids: list[str]) -> set[str]:
        """Return which of these orders are still open."""
        if not order_ids:
            return set()
        rows = await connection.execute(select(orders.c.work_order_id).where(orders.c.work_order_id.in_(order_ids), orders.c.status == "open"))
        return {row.work_order_id for row in rows}

    @staticmethod
    async def timers_by_id(connection: AsyncConnection, ids: list[str]) -> dict[str, Timer]:
        """Load timers by id."""
        if not ids:
            return {}
        return {row.followup_id: _timer(row) for row in await connection.execute(select(timers).where(timers.c.followup_id.in_(ids)))}

    @staticmethod
    async def answered_revisits(connection: AsyncConnection, ids: list[str]) -> dict[str, str]:
        """Lock these revisits where fired, and return the event id of the result recorded for each one answered."""
        if not ids:
            return {}
        # Another instance answering the same revisit waits here until this batch commits, then reads its result
        # (a new snapshot per statement): one result per revisit counts even across instances on PostgreSQL.
        # Locked in id order, so two batches never hold one each; pending timers are left to claim_due.
        await connection.execute(
            select(timers.c.followup_id)
            .where(timers.c.followup_id.in_(ids), timers.c.kind == "revisit", timers.c.state == "fired")
            .order_by(timers.c.followup_id)
            .with_for_update()
        )
        rows = await connection.execute(select(results.c.followup_id, results.c.event_id).where(results.c.followup_id.in_(ids)))
        return {row.followup_id: row.event_id for row in rows}

    @staticmethod
    async def record_round(connection: AsyncConnection, fired: list[str], cancelled: list[str], done: list[str], now: datetime) -> None:
        """Record a round of due timers: which fired, which were cancelled, and the processed ids of the breaches that re-graded."""
        if fired:
            await connection.execute(update(timers).where(timers.c.followup_id.in_(fired)).values(state="fired", fired_at=utc(now)))
        if cancelled:
            await connection.execute(update(timers).where(timers.c.followup_id.in_(cancelled)).values(state="cancelled"))
        await FollowupStore.mark_processed(connection, done, now)

    @staticmethod
    async def record_results(connection: AsyncConnection, recorded: list[FollowupResult], done: list[str], now: datetime) -> None:
        """Record revisit results and the processed ids of a batch; a result recorded before is kept as it was."""
        await insert_ignoring_duplicates(connection, results, [{
            "event_id": r.event_id, "followup_id": r.followup_id, "satisfaction": r.satisfaction, "flared_up": flared_up(r),
        } for r in recorded])
        await FollowupStore.mark_processed(connection, done, now)

    async def figures(self, now: datetime) -> dict:
        """Count what the closure metrics report, straight from the store so they are exact across restarts."""
        async with self.reader.connect() as connection:
            by_department = await connection.execute(
                select(orders.c.department, func.count(), func.sum((orders.c.status == "resolved").cast(Integer))).group_by(orders.c.department)
            )
            resolved = (await connection.execute(select(func.count(), func.sum((resolutions.c.failed_mediations == 0).cast(Integer))))).one()
            satisfaction = (await connection.execute(select(func.count(), func.avg(results.c.satisfaction), func.sum(results.c.flared_up.cast(Integer))))).one()
            overdue = (await connection.execute(select(func.count()).where(orders.c.status == "open", orders.c.due_at < utc(now)))).scalar()
            fired = dict((await connection.execute(select(timers.c.kind, func.count()).where(timers.c.state == "fired").group_by(timers.c.kind))).all())
        return {
            "departments": {row[0]: (row[1], row[2] or 0) for row in by_department},
            "resolved": resolved[0], "resolved_without_failure": resolved[1] or 0,
            "results": satisfaction[0], "satisfaction": float(satisfaction[1] or 0), "flared_up": satisfaction[2] or 0,
            "overdue": overdue, "fired": fired,
        }

    @staticmethod
    async def retained_page(connection: AsyncConnection, after: str, limit: int) -> list[Kept]:
        """Return up to `limit` disputes not yet erased, in id order after `after`, each needed while an order is open or a timer pending.

        With no open order and no pending timer, nothing reads the report again: SLA timers and revisits are all
        fired or cancelled. A revisit fired but unanswered is still awaited only until the dispute is erased,
        `retention_days` later: a result after that is refused as expired. A new attempt brings its report with it.
        """
        return _kept(await connection.execute(retained_page_query(after, limit)))

    @staticmethod
    async def retained_locked(connection: AsyncConnection, dispute_ids: list[str]) -> list[Kept]:
        """Return these disputes if not yet erased, locked in id order (event batches update disputes in id order too)."""
        query = _retained().where(disputes.c.dispute_id.in_(dispute_ids)).order_by(disputes.c.dispute_id).with_for_update(of=disputes)
        return _kept(await connection.execute(query))

    @staticmethod
    async def reports(connection: AsyncConnection, dispute_ids: list[str]) -> dict[str, DisputeReported]:
        """Return the stored report of each of these disputes."""
        return {key: dispute.report for key, dispute in (await FollowupStore.load_disputes(connection, dispute_ids)).items()}

    @staticmethod
    async def purge(connection: AsyncConnection, plan: RetentionPlan, erased: Mapping[str, DisputeReported], now: datetime) -> None:
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
                [{"key": key, "report": report.model_dump_json()} for key, report in erased.items()],
            )


def retained_page_query(after: str, limit: int) -> Select:
    """Return the query `retained_page` runs (the upgrade test reads its plan)."""
    return _retained().where(disputes.c.dispute_id > after).order_by(disputes.c.dispute_id).limit(limit)


def _retained() -> Select:
    open_order = exists().where(orders.c.dispute_id == disputes.c.dispute_id, orders.c.status == "open")
    pending = exists().where(timers.c.dispute_id == disputes.c.dispute_id, timers.c.state == "pending")
    return select(disputes.c.dispute_id, disputes.c.settled_at, (open_order | pending).label("needed")).where(disputes.c.erased_at.is_(None))


def _kept(rows) -> list[Kept]:
    return [Kept(row.dispute_id, bool(row.needed), aware(row.settled_at) if row.settled_at is not None else None) for row in rows]


async def _add_timers(connection: AsyncConnection, new: list[Timer]) -> None:
    # A timer that exists keeps its state: a repeated event must not revive a fired or cancelled one.
    await insert_ignoring_duplicates(connection, timers, [timer_row(t) for t in new])


async def _cancel(connection: AsyncConnection, *conditions) -> None:
    await connection.execute(update(timers).where(timers.c.state == "pending", *conditions).values(state="cancelled"))


async def _remember(connection: AsyncConnection, newest: list[Dispute], known: set[str]) -> None:
    # In id order, the order the retention pass locks disputes in: the two never wait on each other in a cycle.
    changed = [
        {"key": d.dispute_id, "attempt": d.attempt, "level": d.level, "report": d.report.model_dump_json()}
        for d in sorted(newest, key=lambda d: d.dispute_id) if d.dispute_id in known
    ]
    if changed:
        # A newer attempt is in use again and brings its report back: retention starts over.
        await connection.execute(
            update(disputes).where(disputes.c.dispute_id == bindparam("key"))
            .values(attempt=bindparam("attempt"), level=bindparam("level"), report=bindparam("report"), settled_at=None, erased_at=None),
            changed,
        )
    await insert_ignoring_duplicates(connection, disputes, [
        {"dispute_id": d.dispute_id, "attempt": d.attempt, "level": d.level, "report": d.report.model_dump_json()}
        for d in newest if d.dispute_id not in known
    ])


def _create(connection: Connection) -> None:
    """Create the tables, and bring a store from before the retention columns, indexes or department-scoped ids up to date."""
    metadata.create_all(connection)
    _rekey_results(connection)
    # Follow-up has no migrations: added columns are nullable, added the same way on SQLite and PostgreSQL.
    present_columns = {column["name"] for column in inspect(connection).get_columns(disputes.name)}
    for name in _RETENTION_COLUMNS:
        if name not in present_columns:
            connection.exec_driver_sql(f"ALTER TABLE {disputes.name} ADD COLUMN {name} {disputes.c[name].type.compile(connection.dialect)}")
    kept_disputes.create(connection, checkfirst=True)
    pending_by_due.create(connection, checkfirst=True)
    pending_by_dispute.create(connection, checkfirst=True)
    results_by_followup.create(connection, checkfirst=True)
    for name in _SUPERSEDED_INDEXES:
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    _widen_processed_ids(connection)


def _widen_processed_ids(connection: Connection) -> None:
    """Widen a store's processed ids created at 80 characters, too few for a department-scoped result key."""
    # SQLite ignores a VARCHAR's length; PostgreSQL enforces it, and widening a VARCHAR rewrites nothing.
    if connection.dialect.name != "postgresql":
        return
    [column] = [c for c in inspect(connection).get_columns(processed.name) if c["name"] == "event_id"]
    if getattr(column["type"], "length", None) != processed.c.event_id.type.length:
        connection.exec_driver_sql(f"ALTER TABLE {processed.name} ALTER COLUMN event_id TYPE VARCHAR({processed.c.event_id.type.length})")


def _rekey_results(connection: Connection) -> None:
    """Key a store's results by revisit and event id where they were keyed by the event id alone."""
    found = inspect(connection).get_pk_constraint(results.name)
    if found["constrained_columns"] == [c.name for c in results.primary_key]:
        return
    key = ", ".join(c.name for c in results.primary_key)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ALTER TABLE {results.name} DROP CONSTRAINT {found['name']}, ADD PRIMARY KEY ({key})")
        return
    # SQLite cannot change a primary key: the table is built anew and the results copied over, in this transaction.
    columns = ", ".join(c.name for c in results.columns)
    connection.exec_driver_sql(f"DROP INDEX IF EXISTS {results_by_followup.name}")
    connection.exec_driver_sql(f"ALTER TABLE {results.name} RENAME TO {results.name}_by_event")
    results.create(connection)  # with its index
    connection.exec_driver_sql(f"INSERT INTO {results.name} ({columns}) SELECT {columns} FROM {results.name}_by_event")
    connection.exec_driver_sql(f"DROP TABLE {results.name}_by_event")
