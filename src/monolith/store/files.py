"""Uploaded and produced files, shared by every replica: a file's record lives in the database and its content in
`files.dir`, which all replicas mount. Each belongs to the API key that made it and expires after
`files.ttl_s`, unless a batch still running reads it."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import and_, func, or_, select

from monolith.errors import Conflict
from monolith.store.atomic import copy_lines_atomically
from monolith.store.database import Database
from monolith.store.tables import batches, files

# A batch in one of these states still reads its input file.
ACTIVE = ("validating", "in_progress", "cancelling")


@dataclass(frozen=True)
class FileRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    owner: str = ""


FILE_COLUMNS = [files.c.id, files.c.filename, files.c.purpose, files.c.bytes, files.c.created_at, files.c.owner]


def new_file_id() -> str:
    """Time first, then random: ids sort in creation order (files are listed newest first)."""
    return f"file-{time.time_ns():016x}{secrets.token_hex(8)}"


class FileStore:
    def __init__(self, db: Database, files_dir: Path) -> None:
        files_dir.mkdir(parents=True, exist_ok=True)
        self.db = db
        self.files_dir = files_dir

    def path_of(self, file_id: str) -> Path:
        return self.files_dir / f"{file_id}.jsonl"

    @property
    def parts_dir(self) -> Path:
        """Where running batches' shards write their answers (store.batches), beside the files."""
        return self.files_dir / "parts"

    async def add_file_from(
        self,
        source: BinaryIO,
        filename: str,
        purpose: str,
        owner: str,
        check: Callable[[int, bytes], None],
        max_lines: int,
        max_line_bytes: int,
        finish: Callable[[], None] | None = None,
    ) -> FileRecord:
        """An upload, checked line by line while it is copied into place (never whole in memory), then as a whole
        by `finish`."""
        file_id = new_file_id()
        path = self.path_of(file_id)
        size, _ = await asyncio.to_thread(copy_lines_atomically, source, path, check, max_lines, max_line_bytes, finish)
        record = FileRecord(file_id, filename, purpose, size, int(time.time()), owner)
        try:
            async with self.db.begin() as conn:
                await conn.execute(files.insert().values(**record.__dict__))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return record

    async def get_file(self, file_id: str, owner: str | None = None) -> FileRecord | None:
        query = select(*FILE_COLUMNS).where(files.c.id == file_id)
        if owner is not None:  # None: any owner (the runners); a string: only what that caller made
            query = query.where(files.c.owner == owner)
        async with self.db.read() as conn:
            row = (await conn.execute(query)).first()
        return FileRecord(*row) if row else None

    async def list_files(
        self, owner: str, purpose: str | None, limit: int, after: str | None
    ) -> tuple[list[FileRecord], bool]:
        """Newest first, as OpenAI lists them; `after` is the last id of the previous page."""
        query = select(*FILE_COLUMNS).where(files.c.owner == owner)
        if purpose:
            query = query.where(files.c.purpose == purpose)
        if after:
            cursor = select(files.c.created_at, files.c.id).where(files.c.id == after).subquery()
            query = query.where(
                or_(
                    files.c.created_at < select(cursor.c.created_at).scalar_subquery(),
                    and_(
                        files.c.created_at == select(cursor.c.created_at).scalar_subquery(),
                        files.c.id < after,
                    ),
                )
            )
        query = query.order_by(files.c.created_at.desc(), files.c.id.desc()).limit(limit + 1)
        async with self.db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [FileRecord(*r) for r in rows[:limit]], len(rows) > limit

    async def usage(self, owner: str) -> tuple[int, int]:
        """(files, bytes) an owner stores."""
        query = select(func.count(), func.coalesce(func.sum(files.c.bytes), 0)).where(files.c.owner == owner)
        async with self.db.read() as conn:
            count, size = (await conn.execute(query)).one()
        return int(count), int(size)

    async def delete_file(self, file_id: str, owner: str) -> bool:
        """False when the owner has no such file; a 409 while an unfinished batch reads it."""
        async with self.db.begin() as conn:
            mine = select(files.c.id).where(files.c.id == file_id, files.c.owner == owner)
            if (await conn.execute(mine)).first() is None:
                return False
            in_use = select(batches.c.id).where(batches.c.input_file_id == file_id, batches.c.status.in_(ACTIVE))
            if (await conn.execute(in_use.limit(1))).first() is not None:
                message = f"file {file_id} is the input of a batch still running; cancel the batch first"
                raise Conflict(message, param="file_id")
            deleted = await conn.execute(files.delete().where(files.c.id == file_id, files.c.owner == owner))
        if deleted.rowcount == 1:
            self.path_of(file_id).unlink(missing_ok=True)
        return deleted.rowcount == 1

    async def expire_files(self, older_than: int) -> int:
        """Files past files.ttl_s, except the input of a batch still running; their content goes too."""
        in_use = select(batches.c.input_file_id).where(batches.c.status.in_(ACTIVE))
        expired = files.delete().where(files.c.created_at < older_than, files.c.id.not_in(in_use))
        async with self.db.begin() as conn:
            ids = [r.id for r in await conn.execute(expired.returning(files.c.id))]
        for file_id in ids:
            self.path_of(file_id).unlink(missing_ok=True)
        # A batch's shard parts go when its output is assembled; a failed batch's stay until they are this old.
        for part in self.parts_dir.glob("*.jsonl"):
            with contextlib.suppress(FileNotFoundError):
                if part.stat().st_mtime < older_than:
                    part.unlink()
        return len(ids)

    async def register_output(self, file_id: str, filename: str, owner: str) -> None:
        """A batch's output file's record (its content was appended while the batch ran)."""
        path = self.path_of(file_id)
        size = path.stat().st_size if path.exists() else 0
        record = {
            "id": file_id,
            "filename": filename,
            "purpose": "batch_output",
            "bytes": size,
            "created_at": int(time.time()),
            "owner": owner,
        }
        statement = self.db.insert(files).values(**record)
        statement = statement.on_conflict_do_update(index_elements=[files.c.id], set_={"bytes": size})
        async with self.db.begin() as conn:
            await conn.execute(statement)
