"""Alembic environment: migrations run on the connection the service hands over at start."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="dispatch_alembic_version")
with context.begin_transaction():
    context.run_migrations()
