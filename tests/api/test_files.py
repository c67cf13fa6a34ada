"""A file's content is read from the handle opened while the request is handled: a delete that lands between that
and the answer (another request; the fuzzer's two workers met it as a 500) cannot fail the answer. The routes
themselves: tests/api/test_bounds.py, tests/api/test_batches.py."""

from __future__ import annotations

from pathlib import Path

from litestar import Litestar, get
from litestar.response import File
from litestar.testing import TestClient

from monolith.api.files import OpenedFile


def test_a_file_deleted_after_it_was_opened_is_still_answered_in_full(tmp_path: Path) -> None:
    path = tmp_path / "file-1.jsonl"
    content = b'{"custom_id": "a"}\n' * 10_000  # several chunks
    path.write_bytes(content)

    @get("/content")
    async def read() -> File:
        opened = OpenedFile(path.open("rb"))
        path.unlink()  # the delete landing between the open and the answer
        return File(path, media_type="application/jsonl", file_system=opened, file_info=opened.info(path))

    with TestClient(Litestar([read])) as client:
        response = client.get("/content")
    assert response.status_code == 200
    assert response.content == content and response.headers["content-length"] == str(len(content))
