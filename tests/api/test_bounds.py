"""Every size, count and depth a client controls is bounded, and going past a bound is a 4xx naming the field,
never a 5xx: request bodies, sampling fields, prompt lists, request ids, uploaded batch files. The real app over a
scripted engine (`scripted`, so `make test-quick` runs them), but where the real engine or tokenizer is the point."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from monolith.protocol.completions import MAX_PROMPTS

CHAT = {"model": "twin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def post_raw(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return http.post(path, content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/rag", "/v1/async/rag"])
def test_json_nested_deeper_than_python_recurses_is_a_400(scripted: httpx.Client, path: str) -> None:
    for deep in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        response = post_raw(scripted, path, b'{"model": "twin", "x": ' + deep + b"}")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/rag"])
def test_a_body_that_is_not_utf8_is_a_400(scripted: httpx.Client, path: str) -> None:
    body = b'{"model": "twin", "query": "\xc3\x28", "messages": [{"role": "user", "content": "\xff\xfe"}]}'
    response = post_raw(scripted, path, body)
    assert response.status_code == 400, response.text
    assert "UTF-8" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
        ({"stop": ""}, "stop"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": "x" * 1001}, "stop"),
        ({"user": "u" * 257}, "user"),
        ({"model": "m" * 257}, "model"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 1001}]}, "messages[0].content"),
    ],
)
def test_values_vllm_would_refuse_are_400s_at_the_edge(scripted: httpx.Client, extra: dict, param: str) -> None:
    response = scripted.post("/v1/chat/completions", json={**CHAT, **extra})
    assert response.status_code in (400, 404), response.text  # a too-long model name is simply unknown
    assert response.json()["error"]["param"].startswith(param), response.text


def test_a_seed_at_the_64_bit_edge_is_accepted(http: httpx.Client) -> None:
    assert http.post("/v1/chat/completions", json={**CHAT, "seed": 2**63 - 1}).status_code == 200
    assert http.post("/v1/chat/completions", json={**CHAT, "seed": -(2**63)}).status_code == 200


def test_a_prompt_list_is_capped(scripted: httpx.Client) -> None:
    body = {"model": "twin", "prompt": ["hi"] * (MAX_PROMPTS + 1), "max_tokens": 1}
    response = scripted.post("/v1/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "prompt"
    assert "limit" in response.json()["error"]["message"]


def test_each_prompt_of_a_list_counts_for_admission(scripted: httpx.Client) -> None:
    # The session server admits 32 at once (admission.max_waiting): 40 prompts can never be admitted.
    body = {"model": "twin", "prompt": ["hi"] * 40, "max_tokens": 1}
    response = scripted.post("/v1/completions", json=body)
    assert response.status_code == 400 and "admits 32 at once" in response.json()["error"]["message"]
    ok = scripted.post("/v1/completions", json={**body, "prompt": ["hi"] * 8})
    assert ok.status_code == 200 and len(ok.json()["choices"]) == 8


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("trace-42.abc:7", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("", False),
    ],
)
def test_a_client_request_id_is_echoed_only_when_short_and_printable(
    scripted: httpx.Client, sent: str, echoed: bool
) -> None:
    response = scripted.get("/v1/models", headers={"X-Request-Id": sent})
    assert (response.headers["x-request-id"] == sent) is echoed
    assert response.headers["x-request-id"]


def upload(http: httpx.Client, content: bytes) -> httpx.Response:
    return http.post("/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": "batch"})


def line(custom_id: str, **body: object) -> bytes:
    payload = {"model": "twin", "prompt": "hi", "max_tokens": 2, **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/completions", "body": payload}).encode()


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (line("a") + b"\n{not json\n", "line 2 is not JSON"),
        (line("a") + b"\n" + line("b")[:-1] + b"\n", "line 2 is not JSON"),
        (line("a") + b"\n" + line("a") + b"\n", "line 2: custom_id 'a' is already used on line 1"),
        (b'{"custom_id": "a", "method": "GET", "url": "/v1/completions", "body": {}}\n', "line 1: method"),
        (b'{"custom_id": "a", "method": "POST", "url": "/v1/moderations", "body": {}}\n', "line 1: url"),
        (b'{"custom_id": "a", "method": "POST", "url": "/rag", "body": ' + b"[" * 50_000 + b"]" * 50_000 + b"}\n",
         "line 1 is not JSON"),
        (line("a", prompt="x" * 1_100_000) + b"\n", "line 1 has more than"),
        (b"\xff\xfe\n", "line 1 is not JSON"),
    ],
)  # fmt: skip
def test_a_bad_batch_file_is_refused_at_upload_naming_the_line(
    scripted: httpx.Client, content: bytes, words: str
) -> None:
    response = upload(scripted, content)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "file" and words in error["message"], error


def test_a_file_with_more_lines_than_allowed_is_refused(scripted: httpx.Client) -> None:
    # The test servers allow 1 000 lines (files.max_lines; OpenAI allows 50 000).
    content = b"\n".join(line(f"c{i}") for i in range(1001))
    response = upload(scripted, content)
    assert response.status_code == 400 and "more than 1000 lines" in response.json()["error"]["message"]


def test_files_are_listed_newest_first_and_deleted(scripted: httpx.Client) -> None:
    first = upload(scripted, line("a")).json()
    second = upload(scripted, line("b")).json()
    assert first["expires_at"] > first["created_at"]
    listed = scripted.get("/v1/files", params={"purpose": "batch"}).json()
    ids = [f["id"] for f in listed["data"]]
    assert ids.index(second["id"]) < ids.index(first["id"]) and listed["object"] == "list"
    deleted = scripted.delete(f"/v1/files/{first['id']}")
    assert deleted.status_code == 200 and deleted.json() == {"id": first["id"], "object": "file", "deleted": True}
    assert scripted.get(f"/v1/files/{first['id']}").status_code == 404
    assert scripted.get(f"/v1/files/{first['id']}/content").status_code == 404
    assert scripted.delete(f"/v1/files/{first['id']}").status_code == 404
    assert scripted.get(f"/v1/files/{second['id']}/content").content == line("b") + b"\n"


def test_tokenising_long_prompts_does_not_stall_other_clients(http: httpx.Client) -> None:
    """Three ~930 KB prompts take ~0.5-1.3 s to tokenise here; on the event loop that would stall every client."""
    huge = {"model": "twin", "messages": [{"role": "user", "content": "serving large models on small boxes " * 25_000}]}
    probes: list[tuple[float, float]] = []  # (sent at, latency) of each liveness probe
    answers_seen: list[int | str] = []  # checked here, not in the thread: an assert there would only warn
    probing, done = threading.Event(), threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=10) as client:
            while not done.is_set():
                started = time.monotonic()
                try:
                    answers_seen.append(client.get("/health/live").status_code)
                except httpx.HTTPError as exc:
                    answers_seen.append(type(exc).__name__)
                probes.append((started, time.monotonic() - started))
                probing.set()
                time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        assert probing.wait(10), "the prober got no answer"  # probing before the prompts go, not after
        sent = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: http.post("/v1/chat/completions", json=huge), range(3)))
        answered = time.monotonic()
    finally:
        done.set()
        prober.join()
    assert all(a.status_code == 400 and a.json()["error"]["param"] == "messages" for a in answers)
    assert set(answers_seen) == {200}, [a for a in answers_seen if a != 200][:5]
    # Probes sent while the prompts were being tokenised, each answered at once.
    during = [latency for at, latency in probes if sent <= at <= answered]
    assert len(during) >= 3 and max(during) < 0.3, (len(during), sorted(during)[-5:])


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),  # OpenAI: at most 16 pairs
        ({"k" * 65: "v"}, "metadata"),  # keys up to 64 characters
        ({"k": "v" * 513}, "metadata"),  # values up to 512
        ({"k": 1}, "metadata"),  # values are strings
    ],
)
def test_batch_metadata_has_openais_bounds(scripted: httpx.Client, metadata: dict, param: str) -> None:
    file_id = upload(scripted, line("meta")).json()["id"]
    body = {"input_file_id": file_id, "endpoint": "/v1/completions", "completion_window": "24h"}
    refused = scripted.post("/v1/batches", json={**body, "metadata": metadata})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"].startswith(param), refused.text
    edge = {f"k{i}" + "k" * 60: "v" * 512 for i in range(16)}  # every bound met exactly
    accepted = scripted.post("/v1/batches", json={**body, "metadata": edge})
    assert accepted.status_code == 200 and accepted.json()["metadata"] == edge, accepted.text
    scripted.post(f"/v1/batches/{accepted.json()['id']}/cancel")


@pytest.mark.parametrize("path", ["/v1/responses"])
def test_response_metadata_has_openais_bounds(scripted: httpx.Client, path: str) -> None:
    body = {"model": "twin", "input": "hi", "max_output_tokens": 2}
    refused = scripted.post(path, json={**body, "metadata": {f"k{i}": "v" for i in range(17)}})
    assert refused.status_code == 400 and refused.json()["error"]["param"].startswith("metadata"), refused.text


def test_ids_and_file_names_are_bounded(scripted: httpx.Client) -> None:
    body = {"input_file_id": "f" * 129, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    refused = scripted.post("/v1/batches", json=body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input_file_id", refused.text
    named = scripted.post("/v1/files", data={"purpose": "batch"}, files={"file": ("n" * 256 + ".jsonl", line("x"))})
    assert named.status_code == 400 and named.json()["error"]["param"] == "file", named.text
    empty = scripted.post("/v1/files", data={"purpose": "batch"}, files={"file": ("empty.jsonl", b"")})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "file", empty.text
    for blank in (b"\n\n", b" \n\t\n", b"\r\n"):  # no request line: a batch over it would have nothing to run
        refused = scripted.post("/v1/files", data={"purpose": "batch"}, files={"file": ("blank.jsonl", blank)})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "file", refused.text
        assert "blank" in refused.json()["error"]["message"]
