"""API keys: constant-time Bearer checks, key ids as owners, rotation through the Secret file or SIGHUP,
and what an open server says about itself."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import AuthenticationError, OpenAI
from pydantic import SecretStr

from monolith.api.auth import ANONYMOUS, ApiKeys, is_public, key_id, warn_if_open
from monolith.config import ServerSettings
from tests.api.test_jobs import wait_for_job
from tests.conftest import ManagedServer, managed_server
from tests.helpers import eventually


def server(**kw: object) -> ServerSettings:
    return ServerSettings(**kw)  # type: ignore[arg-type]


def test_an_open_server_makes_every_caller_the_same_anonymous_owner() -> None:
    keys = ApiKeys(server())
    assert not keys.enabled
    assert keys.owner_of(None) == ANONYMOUS and keys.owner_of("Bearer whatever") == ANONYMOUS


def test_a_right_key_names_its_owner_and_a_wrong_or_missing_one_nobody() -> None:
    keys = ApiKeys(server(api_keys=[SecretStr("key-a"), SecretStr("key-b")]))
    assert keys.owner_of("Bearer key-a") == key_id("key-a") != keys.owner_of("Bearer key-b")
    assert keys.owner_of("bearer  key-b ") == key_id("key-b")
    for header in (None, "", "Bearer", "Bearer ", "Basic key-a", "Bearer key-c", "key-a", "Bearer key-a2"):
        assert keys.owner_of(header) is None, header
    assert "key-a" not in key_id("key-a") and len(key_id("key-a")) == len("key_") + 24


def test_keys_in_the_secret_file_rotate_without_a_restart(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("monolith.api.auth.FILE_CHECK_EVERY_S", 0.0)
    secret = tmp_path / "api-keys"
    secret.write_text("# one key a line\nold-key\n\n")
    keys = ApiKeys(server(api_keys_file=str(secret)))
    assert keys.owner_of("Bearer old-key") == key_id("old-key")
    # Kubernetes updates a mounted Secret by swapping a symlink to a new file.
    replacement = tmp_path / "api-keys.new"
    replacement.write_text("new-key\n")
    os.replace(replacement, secret)
    assert keys.owner_of("Bearer new-key") == key_id("new-key")
    assert keys.owner_of("Bearer old-key") is None


def test_sighup_reload_and_an_unreadable_file_keeps_the_current_keys(tmp_path: Path) -> None:
    secret = tmp_path / "api-keys"
    secret.write_text("first\n")
    keys = ApiKeys(server(api_keys_file=str(secret), api_keys=[SecretStr("inline")]))
    secret.write_text("second\n")
    keys.reload()  # what SIGHUP does
    assert keys.owner_of("Bearer second") and keys.owner_of("Bearer inline") and not keys.owner_of("Bearer first")
    secret.unlink()
    keys.reload()
    assert keys.owner_of("Bearer second"), "a missing file does not lock everybody out"


def test_probes_stay_public_and_metrics_and_schema_as_configured() -> None:
    default = server(api_keys=[SecretStr("k")])
    assert is_public("/health/live", default) and is_public("/health/ready", default)
    assert is_public("/metrics", default) and not is_public("/schema", default)
    assert not is_public("/v1/models", default) and not is_public("/health/liveness", default)
    strict = server(api_keys=[SecretStr("k")], protect_metrics=True, protect_schema=False)
    assert not is_public("/metrics", strict) and is_public("/schema/openapi.json", strict)


def test_an_open_server_on_a_public_address_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="monolith.api.auth"):
        warn_if_open(ApiKeys(server()), "127.0.0.1")
        warn_if_open(ApiKeys(server(api_keys=[SecretStr("k")])), "0.0.0.0")
        assert not caplog.records
        warn_if_open(ApiKeys(server()), "0.0.0.0")
    assert len(caplog.records) == 1 and "no API keys" in caplog.records[0].getMessage()


# --- a server process with keys -----------------------------------------------------------------------

KEY_A, KEY_B = "key-a-0123456789", "key-b-9876543210"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[ManagedServer]:
    secret = tmp_path_factory.mktemp("secret") / "api-keys"
    secret.write_text(f"{KEY_B}\n")
    env = {
        "MONOLITH_SERVER__API_KEYS": json.dumps([KEY_A]),  # one from the environment,
        "MONOLITH_SERVER__API_KEYS_FILE": str(secret),  # the other from a file, as a mounted Secret
        "MONOLITH_RAG__EXPAND": "false",
        "MONOLITH_JOBS__MAX_UNFINISHED_PER_OWNER": "3",
        "MONOLITH_FILES__MAX_PER_OWNER": "3",
    }
    # Keys, owners and quotas need a server process (SIGHUP, its log), not real tokens: the scripted engine's.
    with managed_server(tmp_path_factory.mktemp("keyed"), model_dir, env, scripted=True) as managed:
        managed.secret = secret  # type: ignore[attr-defined]
        yield managed


def as_key(managed: ManagedServer, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=managed.up().base_url, headers=headers, timeout=120)


def openai_client(managed: ManagedServer, key: str) -> OpenAI:
    return OpenAI(base_url=f"{managed.up().base_url}/v1", api_key=key, max_retries=0, timeout=120)


def test_the_openai_client_works_with_a_right_key_and_fails_with_a_wrong_one(keyed: ManagedServer) -> None:
    client = openai_client(keyed, KEY_A)
    reply = client.chat.completions.create(model="twin", messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
    assert reply.choices[0].message.content
    stream = client.chat.completions.create(
        model="twin", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    lines = [
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/completions",
                "body": {"model": "twin", "prompt": "Hi", "max_tokens": 2},
            }
        )
        for i in range(3)
    ]
    uploaded = client.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h")
    deadline = time.monotonic() + 120
    while batch.status != "completed" and time.monotonic() < deadline:
        time.sleep(0.5)
        batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed" and batch.request_counts.completed == 3
    assert len(client.files.content(batch.output_file_id).text.splitlines()) == 3
    with pytest.raises(AuthenticationError) as wrong:
        openai_client(keyed, "not-a-key").models.list()
    assert wrong.value.status_code == 401 and wrong.value.body["code"] == "invalid_api_key"


def test_only_probes_and_the_scrape_answer_without_a_key(keyed: ManagedServer) -> None:
    with as_key(keyed, None) as anonymous:
        assert anonymous.get("/health/live").status_code == 200
        assert anonymous.get("/health/ready").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        for method, path in [
            ("GET", "/v1/models"),
            ("GET", "/schema/openapi.json"),
            ("POST", "/rag"),
            ("GET", "/v1/jobs"),
            ("GET", "/v1/files/file-x"),
        ]:
            response = anonymous.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.json()["error"]["code"] == "invalid_api_key"
            assert response.headers["www-authenticate"] == "Bearer"


def test_one_key_cannot_see_list_or_cancel_what_another_made(keyed: ManagedServer) -> None:
    with as_key(keyed, KEY_A) as a, as_key(keyed, KEY_B) as b:
        body = {
            "model": "twin",
            "messages": [{"role": "user", "content": "Tell a story"}],
            "max_tokens": 300,
            "ignore_eos": True,
        }
        job = a.post("/v1/async/chat/completions", json=body, headers={"Idempotency-Key": "shared"}).json()["id"]
        twin = b.post("/v1/async/chat/completions", json=body, headers={"Idempotency-Key": "shared"}).json()["id"]
        assert twin != job, "Idempotency-Keys are scoped per owner"
        line = {"custom_id": "x", "method": "POST", "url": "/v1/completions", "body": {"model": "twin", "prompt": "Hi"}}
        uploaded = a.post(
            "/v1/files", files={"file": ("in.jsonl", json.dumps(line).encode())}, data={"purpose": "batch"}
        ).json()
        batch = a.post(
            "/v1/batches",
            json={"input_file_id": uploaded["id"], "endpoint": "/v1/completions", "completion_window": "24h"},
        ).json()
        for path in (
            f"/v1/jobs/{job}",
            f"/v1/files/{uploaded['id']}",
            f"/v1/files/{uploaded['id']}/content",
            f"/v1/batches/{batch['id']}",
        ):
            assert b.get(path).status_code == 404, path
            assert a.get(path).status_code == 200, path
        assert b.delete(f"/v1/jobs/{job}").status_code == 404
        assert b.post(f"/v1/batches/{batch['id']}/cancel").status_code == 404
        refused = b.post(
            "/v1/batches",
            json={"input_file_id": uploaded["id"], "endpoint": "/v1/completions", "completion_window": "24h"},
        )
        assert refused.status_code == 404 and refused.json()["error"]["param"] == "input_file_id"
        assert job not in {j["id"] for j in b.get("/v1/jobs", params={"limit": 1000}).json()["data"]}
        assert batch["id"] not in {x["id"] for x in b.get("/v1/batches").json()["data"]}
        assert job in {j["id"] for j in a.get("/v1/jobs", params={"limit": 1000}).json()["data"]}
        assert a.get(f"/v1/jobs/{job}").json()["status"] in {"queued", "running"}, "B's cancel did nothing"
        assert a.delete(f"/v1/jobs/{job}").json()["status"] == "cancelled"
        b.delete(f"/v1/jobs/{twin}")


def test_keys_rotate_through_the_secret_file_without_a_restart(keyed: ManagedServer) -> None:
    server = keyed.up()
    secret: Path = keyed.secret  # type: ignore[attr-defined]
    rotated = "key-c-rotated-1234"
    try:
        replacement = secret.with_name("api-keys.new")
        replacement.write_text(f"{rotated}\n")
        os.replace(replacement, secret)  # what a Secret update does: a new file under the same name
        with as_key(keyed, rotated) as c, as_key(keyed, KEY_B) as b:
            eventually(lambda: c.get("/v1/models").status_code == 200, 10, "the new key to be read")
            assert b.get("/v1/models").status_code == 401, "the old one is gone"
        secret.write_text(f"{KEY_B}\n")
        server.proc.send_signal(signal.SIGHUP)  # and a SIGHUP reads it at once
        with as_key(keyed, KEY_B) as b:
            eventually(lambda: b.get("/v1/models").status_code == 200, 10, "SIGHUP to reload the keys")
    finally:
        secret.write_text(f"{KEY_B}\n")
    assert server.proc.poll() is None, "SIGHUP reloads, it does not stop the server"


def test_a_key_past_its_quota_gets_a_429_and_another_key_does_not(keyed: ManagedServer) -> None:
    body = {"model": "twin", "messages": [{"role": "user", "content": "Tell a story"}], "max_tokens": 300}
    with as_key(keyed, KEY_A) as a, as_key(keyed, KEY_B) as b:
        jobs = [a.post("/v1/async/chat/completions", json={**body, "ignore_eos": True}).json()["id"] for _ in range(3)]
        try:
            refused = a.post("/v1/async/chat/completions", json=body)
            assert refused.status_code == 429 and refused.json()["error"]["type"] == "insufficient_quota"
            assert b.post("/v1/async/chat/completions", json={**body, "max_tokens": 2}).status_code == 202
        finally:
            for job in jobs:
                a.delete(f"/v1/jobs/{job}")
        line = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/completions", "body": {"model": "twin"}})

        def upload() -> httpx.Response:
            return a.post("/v1/files", files={"file": ("in.jsonl", line.encode())}, data={"purpose": "batch"})

        made = [upload().json()["id"] for _ in range(max(0, 3 - len(a.get("/v1/files").json()["data"])))]
        try:
            full = upload()
            assert full.status_code == 429 and full.json()["error"]["type"] == "insufficient_quota"
            other = b.post("/v1/files", files={"file": ("in.jsonl", line.encode())}, data={"purpose": "batch"})
            assert other.status_code == 200, "another key's quota is its own"
            # Batch outputs count too, and a running batch's input cannot go (409): delete what can go.
            stored = [f["id"] for f in a.get("/v1/files").json()["data"]]
            deleted = [f for f in stored if a.delete(f"/v1/files/{f}").status_code == 200][: len(stored) - 2]
            assert len(stored) - len(deleted) <= 2, "enough files could be deleted"
            again = upload()
            assert again.status_code == 200, "deleting a file makes room"
            made.append(again.json()["id"])
        finally:
            for file_id in made:
                a.delete(f"/v1/files/{file_id}")


def test_a_key_never_appears_in_logs_errors_or_what_the_server_stores(keyed: ManagedServer) -> None:
    """Every place the key a caller authenticates with could leak to: the server's log, an error body (a wrong key,
    a bad request, a field that carries the key, a 404), a job's body and the job list, the job store's files."""
    wrong = "key-wrong-5555555555"
    with as_key(keyed, KEY_A) as client, as_key(keyed, wrong) as stranger:
        answers = [
            stranger.post("/v1/chat/completions", json={"model": "twin", "messages": []}),
            client.post("/v1/chat/completions", json={"model": "twin", "messages": [], "api_key": KEY_A}),
            client.post("/rag", json={"query": "hi", "bogus": 1}),
            client.get("/v1/jobs/job-none"),
        ]
        chat = {"model": "twin", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
        job = client.post("/v1/async/chat/completions", json=chat)
        assert job.status_code == 202, job.text
        done = wait_for_job(client, job.json()["id"])
        listed = client.get("/v1/jobs").text
    texts = [a.text for a in answers] + [json.dumps(done), listed, job.text]
    assert all(a.status_code >= 400 for a in answers)
    assert not [t for t in texts if KEY_A in t or KEY_B in t or wrong in t]
    log = keyed.server.log() if keyed.server else ""
    assert log and KEY_A not in log and KEY_B not in log and wrong not in log
    stored = b"".join(p.read_bytes() for p in keyed.data_dir.rglob("jobs.sqlite3*"))
    assert stored and KEY_A.encode() not in stored and wrong.encode() not in stored
