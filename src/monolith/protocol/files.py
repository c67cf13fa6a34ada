"""OpenAI's files (`client.files.*`): a file's record, a list of them, a deletion."""

from __future__ import annotations

import msgspec


class FileObject(msgspec.Struct):
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int
    object: str = "file"
    status: str = "processed"


class FileList(msgspec.Struct):
    data: list[FileObject]
    has_more: bool
    object: str = "list"


class FileDeleted(msgspec.Struct):
    id: str
    deleted: bool = True
    object: str = "file"
