"""Parked updates (their order not yet visible) and the content hash of each processed update."""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add the parked updates, each processed id's content hash, and room for department-scoped update keys."""
    op.create_table(
        "dispatch_parked_updates",
        sa.Column("source_topic", sa.String(255), primary_key=True),
        sa.Column("source_partition", sa.Integer, primary_key=True),
        sa.Column("source_offset", sa.BigInteger, primary_key=True),
        sa.Column("record_key", sa.LargeBinary, nullable=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column("dispatch_processed", sa.Column("content_hash", sa.String(64), nullable=True))
    # 'update:{department}:{event_id}' outgrows 80 characters; SQLite does not enforce the length, so only others alter it.
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("dispatch_processed", "event_id", type_=sa.String(120), existing_type=sa.String(80), existing_nullable=False)


def downgrade() -> None:
    """Drop the parked updates and the content hashes."""
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("dispatch_processed", "event_id", type_=sa.String(80), existing_type=sa.String(120), existing_nullable=False)
    with op.batch_alter_table("dispatch_processed") as batch:
        batch.drop_column("content_hash")
    op.drop_table("dispatch_parked_updates")
