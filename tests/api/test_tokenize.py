"""/tokenize and /detokenize in vLLM's shapes: the prompt the engine would see, for a text or a chat."""

from __future__ import annotations

import httpx

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]


def test_a_chat_tokenises_to_the_prompt_chat_completions_sends(http: httpx.Client) -> None:
    opened = http.post("/tokenize", json={"model": "twin", "messages": MESSAGES}).json()
    closed = http.post("/tokenize", json={"model": "twin", "messages": MESSAGES, "add_generation_prompt": False}).json()
    chat = http.post("/v1/chat/completions", json={"model": "twin", "messages": MESSAGES, "max_tokens": 1}).json()
    assert opened["count"] == len(opened["tokens"]) == chat["usage"]["prompt_tokens"]
    # The generation prompt opens the assistant's turn: the same tokens, then a few more.
    assert opened["tokens"][: closed["count"]] == closed["tokens"] and opened["count"] > closed["count"]
    assert opened["max_model_len"] == 2048


def test_tokens_round_trip_and_strings_are_the_pieces(http: httpx.Client) -> None:
    text = "PagedAttention stores the KV cache in blocks."
    out = http.post("/tokenize", json={"prompt": text, "return_token_strs": True}).json()
    assert "".join(out["token_strs"]) == text
    assert http.post("/detokenize", json={"tokens": out["tokens"]}).json() == {"prompt": text}


def test_bad_tokenize_requests_are_400s_naming_the_field(http: httpx.Client) -> None:
    both = http.post("/tokenize", json={"prompt": "x", "messages": MESSAGES})
    assert both.status_code == 400 and both.json()["error"]["param"] == "prompt"
    outside = http.post("/detokenize", json={"tokens": [1, 10**9]})
    assert outside.status_code == 400 and outside.json()["error"]["param"] == "tokens"
    # Not honoured for a chat (its template writes the special tokens): refused, not ignored.
    special = http.post("/tokenize", json={"messages": MESSAGES, "add_special_tokens": True})
    assert special.status_code == 400 and special.json()["error"]["param"] == "add_special_tokens"
    unknown = http.post("/tokenize", json={"model": "gpt-4o", "prompt": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"
