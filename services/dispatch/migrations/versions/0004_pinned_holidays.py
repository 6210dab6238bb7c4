"""Pinned holidays: each dispute names the holidays file of its attempt, as it names its routing table."""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the dispute's and each pin's holidays id, and the holidays files used."""
    op.add_column("dispatch_disputes", sa.Column("holidays_id", sa.String(64), nullable=True))
    op.add_column("dispatch_routing_pins", sa.Column("holidays_id", sa.String(64), nullable=True))
    op.create_table(
        "dispatch_holiday_files",
        sa.Column("holidays_id", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop the holidays files and the holidays ids."""
    op.drop_table("dispatch_holiday_files")
    for table in ("dispatch_routing_pins", "dispatch_disputes"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("holidays_id")
