"""Retention: when each dispute was first found settled, and when its report's personal data was erased."""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_KEPT = sa.text("erased_at IS NULL")


def upgrade() -> None:
    """Add the settled and erased times, and an index of the disputes not yet erased (the retention pass reads those)."""
    # Disputes stored before this migration are stamped settled by the first pass: retention counts from the upgrade.
    op.add_column("dispatch_disputes", sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("dispatch_disputes", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_dispatch_disputes_kept", "dispatch_disputes", ["dispute_id"], sqlite_where=_KEPT, postgresql_where=_KEPT)


def downgrade() -> None:
    """Drop the index and the retention times (erased reports stay erased)."""
    op.drop_index("ix_dispatch_disputes_kept", table_name="dispatch_disputes")
    with op.batch_alter_table("dispatch_disputes") as batch:
        batch.drop_column("erased_at")
        batch.drop_column("settled_at")
