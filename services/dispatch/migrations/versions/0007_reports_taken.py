"""Reports received vs cases: every report dispatch took, by its figures, and what it did to its case."""

import json
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the reports taken, one row each for the cases already held (their first report)."""
    reports = op.create_table(
        "dispatch_reports",
        sa.Column("event_id", sa.String(120), primary_key=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("dispute_id", sa.String(64), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
    )
    op.create_index("ix_dispatch_reports_case", "dispatch_reports", ["case_id"])
    # A case held already was opened by one report: without it, reports received would fall below cases. The reports
    # that joined a case before this migration left no row and cannot be counted.
    disputes = sa.table("dispatch_disputes", sa.column("dispute_id", sa.String), sa.column("report", sa.Text))
    connection, after, seen = op.get_bind(), "", set()
    while True:
        # A page at a time, read before it is written: the reports' texts of a year's cases need not all be held at once.
        page = connection.execute(
            sa.select(disputes.c.dispute_id, disputes.c.report).where(disputes.c.dispute_id > after).order_by(disputes.c.dispute_id).limit(500)
        ).all()
        if not page:
            break
        rows = []
        for dispute_id, text in page:
            report = json.loads(text)  # an erased report keeps its figures: event id, source and date stay
            if report["event_id"] not in seen:
                seen.add(report["event_id"])
                rows.append({
                    "event_id": report["event_id"], "case_id": dispute_id, "dispute_id": dispute_id, "source": report["source"],
                    "reported_at": datetime.fromisoformat(report["reported_at"]), "outcome": "new",
                })
        op.bulk_insert(reports, rows)
        after = page[-1][0]


def downgrade() -> None:
    """Drop the reports taken."""
    op.drop_index("ix_dispatch_reports_case", "dispatch_reports")
    op.drop_table("dispatch_reports")
