"""Alembic's entry point: the caller (store.database.migrate) hands over an open connection."""

from alembic import context

connection = context.config.attributes["connection"]
# SQLite alters a table by copying it (Alembic's batch mode); PostgreSQL alters it in place.
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
