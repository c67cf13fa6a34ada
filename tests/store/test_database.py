"""`jobs.database` as operators write it becomes the right async driver; logs never show the password."""

from __future__ import annotations

from pathlib import Path

from monolith.store.database import Database, database_url


def test_a_relative_path_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    url = database_url("jobs.sqlite3", tmp_path)
    assert url.drivername == "sqlite+aiosqlite" and url.database == str((tmp_path / "jobs.sqlite3").resolve())
    assert database_url("/abs/jobs.db", tmp_path).database == "/abs/jobs.db"


def test_postgresql_urls_keep_their_libpq_parameters_and_hide_the_password(tmp_path: Path) -> None:
    for scheme in ("postgresql", "postgres"):
        url = database_url(f"{scheme}://app:s3cret@db.internal:5432/app?sslmode=require", tmp_path)
        assert url.drivername == "postgresql+psycopg"
        assert url.query == {"sslmode": "require"} and url.password == "s3cret"
        shown = Database(url).describe()
        assert "s3cret" not in shown and "db.internal:5432/app" in shown
