"""Initial dispatch schema: disputes, work orders, processed event ids."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the dispatch tables."""
    op.create_table(
        "dispatch_disputes",
        sa.Column("dispute_id", sa.String(64), primary_key=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("history", sa.Text, nullable=False),
    )
    op.create_table(
        "dispatch_orders",
        sa.Column("work_order_id", sa.String(64), primary_key=True),
        sa.Column("dispute_id", sa.String(64), nullable=False, index=True),
        sa.Column("department", sa.String(32), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("level", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "dispatch_processed",
        sa.Column("event_id", sa.String(80), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    """Drop the dispatch tables."""
    for table in ("dispatch_processed", "dispatch_orders", "dispatch_disputes"):
        op.drop_table(table)
