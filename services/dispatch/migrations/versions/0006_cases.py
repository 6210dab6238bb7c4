"""One case per dispute: when each case's attempt was resolved, and the ids that joined a case."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the resolution time of a dispute's current attempt and the aliases of merged reports."""
    # Disputes resolved before this migration carry no time: a new report of one starts a new attempt, as it did.
    op.add_column("dispatch_disputes", sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "dispatch_case_aliases",
        sa.Column("dispute_id", sa.String(64), primary_key=True),
        sa.Column("case_id", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    """Drop the aliases and the resolution time."""
    op.drop_table("dispatch_case_aliases")
    with op.batch_alter_table("dispatch_disputes") as batch:
        batch.drop_column("resolved_at")
