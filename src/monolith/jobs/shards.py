"""A batch file's shards on disk: the file split into runs of request lines by byte range, a shard's lines read
back, and the batch's output and error files assembled from the shards' part files, lines in input order, each
custom_id once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from monolith.jobs.lines import parse_line
from monolith.store.atomic import atomically
from monolith.store.batches import ShardPlan


def split(path: Path, shard_lines: int) -> list[ShardPlan]:
    """The file's request lines (blank ones aside) in shards of `shard_lines`, the last one shorter."""
    plans: list[ShardPlan] = []
    start = offset = lines = 0
    first_line = 1
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            if raw.strip():
                if lines == 0:
                    start, first_line = offset, number
                lines += 1
            offset += len(raw)
            if lines == shard_lines:
                plans.append(ShardPlan(start, offset, first_line, lines))
                lines = 0
    if lines:
        plans.append(ShardPlan(start, offset, first_line, lines))
    return plans


def shard_lines(path: Path, plan: ShardPlan) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of each request line in the shard, as `lines.read_lines` gives a whole file's."""
    with path.open("rb") as source:
        source.seek(plan.start_byte)
        offset = plan.start_byte
        for number, raw in enumerate(source, start=plan.first_line):
            if plan.end_byte is not None and offset >= plan.end_byte:
                return
            offset += len(raw)
            if raw.strip():
                yield number, raw


def custom_ids(path: Path, plan: ShardPlan) -> Iterator[str]:
    """The shard's custom_ids in input order, as its runner names them (a line without one is `line-N`)."""
    for number, raw in shard_lines(path, plan):
        yield parse_line(raw, number)[0]


def assemble(source: Path, shards: list[tuple[Path, ShardPlan]], output: Path, errors: Path) -> tuple[int, int]:
    """Writes `output` (the lines answered 200) and `errors` (the failed lines, only when there are any) from the
    shards' parts, in input order, each custom_id once (a repeat, in the same shard or another, keeps its first
    answer). The parts stay: the replica whose ending is recorded deletes them (`remove_parts`), so that a replica
    that lost the ending's lease midway cannot take lines from the one that took it over. (completed, failed)."""
    seen: set[str] = set()
    counts = [0, 0]
    with atomically(output) as good, atomically(errors) as bad:
        for part, plan in shards:
            answers = _answers(part)
            for custom_id in custom_ids(source, plan):
                line = answers.get(custom_id)
                if line is None or custom_id in seen:
                    continue
                seen.add(custom_id)
                ok = json.loads(line)["response"]["status_code"] == 200
                (good if ok else bad).write(line)
                counts[not ok] += 1
    if not counts[1]:
        errors.unlink(missing_ok=True)
    return counts[0], counts[1]


def remove_parts(parts: list[Path]) -> None:
    for part in parts:
        part.unlink(missing_ok=True)


def _answers(part: Path) -> dict[str, bytes]:
    """custom_id -> its output line in a part file (the first, should a line have been written twice)."""
    if not part.exists():
        return {}
    answers: dict[str, bytes] = {}
    for line in part.read_bytes().splitlines(keepends=True):
        try:
            custom_id = json.loads(line)["custom_id"]
        except (ValueError, KeyError, TypeError):  # a torn last line: its runner was killed mid-write
            continue
        answers.setdefault(custom_id, line if line.endswith(b"\n") else line + b"\n")
    return answers
