"""A batch file's shards: every request line in exactly one shard, read back with its line number, for any shard
size and any placement of blank lines; the output assembled in input order, each custom_id once."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest

from monolith.jobs.lines import output_line, read_lines
from monolith.jobs.shards import assemble, custom_ids, remove_parts, shard_lines, split
from monolith.store.batches import ShardPlan


def batch_file(path: Path, n: int, rng: random.Random) -> Path:
    rows = []
    for i in range(n):
        rows.extend(["", "  "][: rng.randrange(3)])  # blank lines anywhere, skipped like read_lines skips them
        rows.append(json.dumps({"custom_id": f"r{i}", "url": "/v1/completions", "body": {"prompt": "é" * i}}))
    path.write_text("\n".join(rows) + rng.choice(["", "\n", "\n\n"]), encoding="utf-8")
    return path


@pytest.mark.parametrize("seed", range(6))
def test_every_request_line_is_in_exactly_one_shard_with_its_line_number(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = batch_file(tmp_path / "in.jsonl", rng.randrange(1, 40), rng)
    whole = list(read_lines(path))
    for size in (1, 2, 3, 7, len(whole), len(whole) + 5):
        plans = split(path, size)
        assert [p.lines for p in plans[:-1]] == [size] * (len(plans) - 1) and 0 < plans[-1].lines <= size
        assert [line for plan in plans for line in shard_lines(path, plan)] == whole, size
        assert all(p.end_byte is not None and p.end_byte <= q.start_byte for p, q in itertools.pairwise(plans))


def test_a_file_of_blank_lines_has_no_shard(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n \n\n")
    assert split(path, 10) == []


def test_a_shard_to_the_end_of_the_file_reads_every_line_after_its_start(tmp_path: Path) -> None:
    path = batch_file(tmp_path / "in.jsonl", 5, random.Random(1))
    whole = list(read_lines(path))
    assert list(shard_lines(path, ShardPlan(0, None, 1, 0))) == whole


def answer(custom_id: str, status: int = 200) -> bytes:
    body = {"ok": custom_id} if status == 200 else {"error": {"type": "invalid_request_error", "message": "no"}}
    return output_line(custom_id, status, body, f"req-{custom_id}")


def ids_in(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines()]


def test_the_output_is_assembled_in_input_order_each_custom_id_once(tmp_path: Path) -> None:
    source = batch_file(tmp_path / "in.jsonl", 10, random.Random(2))
    plans = split(source, 4)
    parts = [tmp_path / f"part{i}.jsonl" for i in range(len(plans))]
    # Each part in the order its lines finished; shard 1 answered r5 twice (a write repeated after a kill).
    parts[0].write_bytes(answer("r3") + answer("r0", 400) + answer("r1") + answer("r2"))
    parts[1].write_bytes(answer("r5") + answer("r4") + answer("r5") + answer("r6"))  # r7: never answered (cancel)
    parts[2].write_bytes(answer("r9") + answer("r8")[:-20])  # torn last line: dropped, r8 stays unanswered
    output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    assert assemble(source, list(zip(parts, plans, strict=True)), output, errors) == (7, 1)
    assert ids_in(output) == ["r1", "r2", "r3", "r4", "r5", "r6", "r9"]
    assert ids_in(errors) == ["r0"], "OpenAI's error file: the failed lines"
    assert all(p.exists() for p in parts), "kept until the ending is recorded"
    remove_parts(parts)
    assert not any(p.exists() for p in parts)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no partial output left"


def test_a_custom_id_repeated_in_two_shards_is_answered_once(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"custom_id": c, "url": "/v1/completions"}) + "\n" for c in "abca"))
    plans = split(source, 2)
    assert [list(custom_ids(source, p)) for p in plans] == [["a", "b"], ["c", "a"]]
    parts = [tmp_path / "p0", tmp_path / "p1"]
    parts[0].write_bytes(answer("a") + answer("b"))
    parts[1].write_bytes(answer("c") + answer("a", 400))
    output, errors = tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    assert assemble(source, list(zip(parts, plans, strict=True)), output, errors) == (3, 0)
    assert ids_in(output) == ["a", "b", "c"]
    assert not errors.exists(), "no failed line, no error file"
