"""Alembic migrations of the job and batch store (run at start-up, see store.database.migrate)."""
