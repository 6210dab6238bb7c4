"""Pinned routing: each dispute names the routing table of its attempt; tables kept by id; pins of inputs in flight."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the dispute's routing id, the routing tables used, and the pins of inputs not yet committed."""
    op.add_column("dispatch_disputes", sa.Column("routing_id", sa.String(64), nullable=True))
    op.create_table(
        "dispatch_routing_tables",
        sa.Column("routing_id", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_table(
        "dispatch_routing_pins",
        sa.Column("input_key", sa.String(80), primary_key=True),
        sa.Column("routing_id", sa.String(64), nullable=False),
        sa.Column("pinned_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the pins, the routing tables and the dispute's routing id."""
    op.drop_table("dispatch_routing_pins")
    op.drop_table("dispatch_routing_tables")
    with op.batch_alter_table("dispatch_disputes") as batch:
        batch.drop_column("routing_id")
