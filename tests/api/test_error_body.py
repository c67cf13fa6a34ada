"""One error body, from one function: a 401 (the API-key guard), a 400 (a field the route refuses), a 404 (an
unknown model) and a 400 from Litestar's own validation all leave through protocol.errors.error_response, in
the same shape, and count in the request metrics with a request id like any other answer."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from pydantic import SecretStr

import monolith.api.errors
from monolith.api.app import create_app
from monolith.config import Settings
from monolith.errors import BadRequest, MonolithError, Unauthorized
from monolith.protocol.errors import error_response
from tests.scripted import ScriptedEngine, scripted_loader

KEY = "sk-test-key"
CHAT = {"model": "twin", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture
def keyed(settings: Settings) -> Settings:
    return settings.model_copy(update={"server": settings.server.model_copy(update={"api_keys": [SecretStr(KEY)]})})


async def test_a_401_and_a_400_share_one_body_made_by_one_function(
    keyed: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered: list[MonolithError] = []

    def spy(exc: MonolithError):
        rendered.append(exc)
        return error_response(exc)

    monkeypatch.setattr(monolith.api.errors, "error_response", spy)
    app = create_app(keyed, loader=scripted_loader(ScriptedEngine()))
    auth = {"Authorization": f"Bearer {KEY}"}
    async with AsyncTestClient(app=app) as client:
        unauthorized = await client.post("/v1/chat/completions", json=CHAT)
        refused = await client.post("/v1/chat/completions", json={**CHAT, "best_of": 3}, headers=auth)
        malformed = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": "many"}, headers=auth)
        unknown = await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"}, headers=auth)
        metrics = (await client.get("/metrics")).text

    assert [r.status_code for r in (unauthorized, refused, malformed, unknown)] == [401, 400, 400, 404]
    assert [type(e) for e in rendered[:2]] == [Unauthorized, BadRequest] and len(rendered) == 4
    for response, exc in zip((unauthorized, refused, malformed, unknown), rendered, strict=True):
        assert response.json() == msgspec.to_builtins(error_response(exc)), "the body is error_response's, whole"
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert response.headers["x-request-id"].startswith("req-")
    assert unauthorized.json()["error"]["code"] == "invalid_api_key"
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"]["param"] == "best_of" and malformed.json()["error"]["param"] == "max_tokens"
    assert 'monolith_requests_total{method="POST",route="/v1/chat/completions",status="401"}' in metrics
