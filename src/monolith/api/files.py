"""OpenAI-compatible files (`client.files.*`): batch inputs checked line by line as they are uploaded, and
batch outputs; each belongs to the API key that made it, and expires after `files.ttl_s`."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Annotated, Any, BinaryIO, Literal

from litestar import Controller, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.params import Body, Parameter
from litestar.response import File
from litestar.types import FileInfo

from monolith.api.openapi import SERVED, errors
from monolith.config import Settings
from monolith.errors import BadRequest, NotFound, QuotaExceeded
from monolith.jobs.lines import LineChecker
from monolith.jobs.wire import file_object
from monolith.protocol.files import FileDeleted, FileList, FileObject
from monolith.store.files import FileRecord, FileStore

MAX_FILENAME = 255  # what a filesystem takes for one name; it is stored and shown back, never used as a path
# The multipart envelope around the file: headers, boundary, the purpose field.
MULTIPART_OVERHEAD = 64 * 1024


@dataclass
class OpenedFile:
    """Litestar's file system for one file opened already: the answer's size and bytes come from the open handle,
    so a delete after the open (another request) cannot turn it into an error; the handle closes with the answer."""

    handle: BinaryIO

    def info(self, path: str | os.PathLike[str], **kwargs: Any) -> FileInfo:
        st = os.fstat(self.handle.fileno())
        return {
            "created": st.st_ctime,
            "gid": st.st_gid,
            "ino": st.st_ino,
            "islink": False,
            "mode": st.st_mode,
            "mtime": st.st_mtime,
            "name": str(path),
            "nlink": st.st_nlink,
            "size": st.st_size,
            "type": "file",
            "uid": st.st_uid,
        }

    def open(self, file: str | os.PathLike[str], mode: str = "rb", buffering: int = -1) -> BinaryIO:
        return self.handle


@dataclass
class FileUpload:
    file: UploadFile
    purpose: Literal["batch"]  # what uploads are for here: batch input


async def file_or_404(files: FileStore, file_id: str, owner: str) -> FileRecord:
    record = await files.get_file(file_id, owner)
    if record is None:
        raise NotFound(f"no file {file_id}", param="file_id")
    return record


def upload_size(upload: UploadFile) -> int:
    """Litestar spooled the upload to a temporary file while it arrived; its size, without reading it."""
    handle = upload.file
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    handle.seek(0)
    return size


class FilesController(Controller):
    """`request_max_body_size` is set from `files.max_bytes` when the app is made (api.app)."""

    path = "/v1/files"
    tags = ["batch"]

    @post(
        "",
        status_code=200,
        summary="Upload a batch input file (JSONL, one request a line)",
        responses=errors(*SERVED, 413, 429, 507),
    )
    async def upload(
        self,
        data: Annotated[FileUpload, Body(media_type=RequestEncodingType.MULTI_PART)],
        files: FileStore,
        owner: str,
        settings: Settings,
    ) -> FileObject:
        cfg = settings.files
        size = upload_size(data.file)
        if size == 0:
            raise BadRequest("the file is empty", param="file")
        if len(data.file.filename or "") > MAX_FILENAME:
            raise BadRequest(f"the file's name has more than {MAX_FILENAME} characters", param="file")
        if size > cfg.max_bytes:
            raise BadRequest(f"the file has {size} bytes; the limit is {cfg.max_bytes}", param="file")
        count, stored = await files.usage(owner)
        if count >= cfg.max_per_owner or stored + size > cfg.max_bytes_per_owner:
            raise QuotaExceeded(
                f"this key stores {count} files ({stored} bytes); the limits are {cfg.max_per_owner} files "
                f"and {cfg.max_bytes_per_owner} bytes: delete some (DELETE /v1/files/{{id}})",
                param="file",
            )
        max_line = settings.server.max_body_bytes
        checker = LineChecker(max_line)
        record = await files.add_file_from(
            data.file.file,
            data.file.filename or "upload.jsonl",
            data.purpose,
            owner,
            checker,
            cfg.max_lines,
            max_line,
            checker.finish,
        )
        return file_object(record, cfg.ttl_s)

    @get("", summary="This key's files, newest first", responses=errors(*SERVED))
    async def list_files(
        self,
        files: FileStore,
        owner: str,
        settings: Settings,
        purpose: Literal["batch", "batch_output"] | None = None,
        limit: Annotated[int, Parameter(ge=1, le=10_000)] = 10_000,
        after: Annotated[str | None, Parameter(max_length=128)] = None,
    ) -> FileList:
        records, has_more = await files.list_files(owner, purpose, limit, after)
        return FileList([file_object(r, settings.files.ttl_s) for r in records], has_more)

    @get("/{file_id:str}", summary="A file's metadata", responses=errors(*SERVED, 404))
    async def file_info(self, file_id: str, files: FileStore, owner: str, settings: Settings) -> FileObject:
        return file_object(await file_or_404(files, file_id, owner), settings.files.ttl_s)

    @get(
        "/{file_id:str}/content",
        media_type="application/jsonl",
        summary="A file's content (JSONL)",
        responses=errors(*SERVED, 404),
    )
    async def file_content(self, file_id: str, files: FileStore, owner: str) -> File:
        await file_or_404(files, file_id, owner)
        path = files.path_of(file_id)
        try:  # opened here, not when the answer starts: a delete meanwhile (another request) unlinks only its name
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise NotFound(f"no file {file_id}", param="file_id") from None
        opened = OpenedFile(handle)
        return File(
            path,
            media_type="application/jsonl",
            content_disposition_type="inline",
            file_system=opened,
            file_info=opened.info(path),
        )

    @delete(
        "/{file_id:str}",
        status_code=200,
        summary="Delete a file (409 while a running batch reads it)",
        responses=errors(*SERVED, 404, 409),
    )
    async def delete_file(self, file_id: str, files: FileStore, owner: str) -> FileDeleted:
        if not await files.delete_file(file_id, owner):
            raise NotFound(f"no file {file_id}", param="file_id")
        return FileDeleted(file_id)
