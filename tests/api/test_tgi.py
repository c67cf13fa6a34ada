"""TGI's own API on the real server, through huggingface_hub's InferenceClient (what TGI users call) and raw
HTTP for TGI's shapes: /generate, /generate_stream, the compat route `POST /`, details, errors."""

from __future__ import annotations

import json

import httpx
import pytest
from huggingface_hub import InferenceClient
from huggingface_hub.errors import ValidationError

from tests.conftest import ServerProcess

PROMPT = "The capital of France is"


@pytest.fixture
def client(server: ServerProcess) -> InferenceClient:
    return InferenceClient(base_url=server.base_url, timeout=120)


def test_text_generation_answers_the_text_without_the_prompt(client: InferenceClient) -> None:
    text = client.text_generation(PROMPT, max_new_tokens=6)
    assert isinstance(text, str) and text and not text.startswith(PROMPT)
    full = client.text_generation(PROMPT, max_new_tokens=6, return_full_text=True)
    assert full == PROMPT + text, "greedy both times (no sampling asked): the same answer after the prompt"


def test_details_give_each_token_its_id_text_and_logprob(client: InferenceClient) -> None:
    out = client.text_generation(PROMPT, max_new_tokens=5, details=True, decoder_input_details=True)
    details = out.details
    assert details is not None and details.generated_tokens == 5 and details.finish_reason == "length"
    assert len(details.tokens) == 5 and "".join(t.text for t in details.tokens) == out.generated_text
    assert all(isinstance(t.id, int) and t.logprob <= 0 and t.special is False for t in details.tokens)
    assert details.prefill and details.prefill[-1].text.strip() == "is", "the prompt's tokens, as TGI gives them"


def test_a_stop_sequence_ends_it_and_says_so(client: InferenceClient) -> None:
    free = client.text_generation(PROMPT, max_new_tokens=12)
    word = free.split()[1] if len(free.split()) > 1 else free.split()[0]
    out = client.text_generation(PROMPT, max_new_tokens=12, stop=[word], details=True)
    assert out.details is not None and out.details.finish_reason == "stop_sequence", (free, out)


def test_streamed_tokens_add_up_to_the_answer_and_the_last_event_carries_it(client: InferenceClient) -> None:
    events = list(client.text_generation(PROMPT, max_new_tokens=6, stream=True, details=True))
    assert len(events) == 6 and [e.index for e in events] == list(range(1, 7))
    last = events[-1]
    assert last.generated_text == "".join(e.token.text for e in events)
    assert last.details is not None and last.details.generated_tokens == 6 and last.details.finish_reason == "length"
    assert all(e.generated_text is None for e in events[:-1])
    plain = list(client.text_generation(PROMPT, max_new_tokens=6, stream=True))
    assert "".join(plain) == last.generated_text, "greedy: the same text streamed without details"


def test_sampling_with_a_seed_repeats(client: InferenceClient) -> None:
    first = client.text_generation(PROMPT, max_new_tokens=8, do_sample=True, temperature=0.9, seed=7)
    again = client.text_generation(PROMPT, max_new_tokens=8, do_sample=True, temperature=0.9, seed=7)
    assert first == again


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": 100_000}, "max_new_tokens"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.0}, "top_p"),
        ({"temperature": 0.0, "do_sample": True}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"best_of": 2}, "best_of"),
        ({"watermark": True}, "watermark"),
        ({"typical_p": 0.5}, "typical_p"),
        # What Python would take for "off" (0 == False, True == 1) and TGI's schema here does not admit.
        ({"typical_p": 0}, "typical_p"),
        ({"adapter_id": False}, "adapter_id"),
        ({"top_n_tokens": 0}, "top_n_tokens"),
        ({"watermark": 0}, "watermark"),
        ({"best_of": True}, "best_of"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"unknown_knob": 1}, "unknown_knob"),
        ({"grammar": {"type": "regex", "value": {"type": "object"}}}, "grammar"),
    ],
)
def test_parameters_tgi_refuses_are_a_422_in_tgi_s_shape(http: httpx.Client, parameters: dict, field: str) -> None:
    response = http.post("/generate", json={"inputs": PROMPT, "parameters": parameters})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error_type"] == "validation" and field in body["error"], body


def test_the_client_raises_tgi_s_validation_error(client: InferenceClient) -> None:
    with pytest.raises(ValidationError):
        client.text_generation(PROMPT, max_new_tokens=6, top_p=1.5)


def test_compat_route_answers_a_list_and_streams_when_asked(http: httpx.Client) -> None:
    payload = {"inputs": PROMPT, "parameters": {"max_new_tokens": 4}}
    listed = http.post("/", json=payload)
    assert listed.status_code == 200 and isinstance(listed.json(), list) and listed.json()[0]["generated_text"]
    with http.stream("POST", "/", json={**payload, "stream": True}) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[5:]) for line in streamed.iter_lines() if line.startswith("data:")]
    assert events[-1]["generated_text"] == listed.json()[0]["generated_text"]


def test_bad_bodies_are_tgi_errors(http: httpx.Client) -> None:
    broken = http.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["error_type"] == "validation"
    missing = http.post("/generate", json={"parameters": {}})
    assert missing.status_code == 422 and "inputs" in missing.json()["error"]


def test_a_grammar_constrains_the_answer(client: InferenceClient) -> None:
    out = client.text_generation(
        "Is the sky blue? Answer:", max_new_tokens=8, grammar={"type": "regex", "value": "(yes|no)"}
    )
    assert out in ("yes", "no")


def test_an_async_job_takes_tgi_s_payload(http: httpx.Client) -> None:
    from tests.api.test_jobs import wait_for_job

    submitted = http.post("/v1/async/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 4}})
    assert submitted.status_code == 202, submitted.text
    job = wait_for_job(http, submitted.json()["id"])
    assert job["status"] == "succeeded" and job["result"]["generated_text"]
