"""The frameworks an app would put in front of this server, unchanged, against a real one: LangChain's
ChatOpenAI (structured output, bound tools) and OpenAIEmbeddings, and the OpenAI Agents SDK running an agent
with a function tool through OpenAIChatCompletionsModel."""

from __future__ import annotations

import asyncio

import numpy as np
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import BaseModel

from monolith.config import EmbedderSettings
from monolith.retrieval.embedder import Embedder
from tests.conftest import ServerProcess


class Person(BaseModel):
    name: str
    age: int


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"21 degrees in {city}"


def chat(server: ServerProcess) -> ChatOpenAI:
    return ChatOpenAI(
        model="twin", base_url=f"{server.base_url}/v1", api_key="unused", temperature=0, max_tokens=120, max_retries=0
    )


def test_langchain_with_structured_output_returns_the_model(server: ServerProcess) -> None:
    person = chat(server).with_structured_output(Person).invoke("Invent a person.")  # json_schema by default
    assert isinstance(person, Person) and person.name


def test_langchain_bind_tools_with_tool_choice_returns_tool_calls(server: ServerProcess) -> None:
    message = chat(server).bind_tools([get_weather], tool_choice="get_weather").invoke("Weather in Paris?")
    assert [c["name"] for c in message.tool_calls] == ["get_weather"]
    assert isinstance(message.tool_calls[0]["args"]["city"], str)
    required = chat(server).bind_tools([get_weather], tool_choice="any").invoke("Weather in Rome?")
    assert required.tool_calls and all(c["name"] == "get_weather" for c in required.tool_calls)


def test_langchain_openai_embeddings_match_the_rag_embedder(server: ServerProcess) -> None:
    # check_embedding_ctx_length=False: else LangChain tokenises with tiktoken, whose files it downloads.
    embeddings = OpenAIEmbeddings(
        model="all-MiniLM-L6-v2", base_url=f"{server.base_url}/v1", api_key="unused", check_embedding_ctx_length=False
    )
    texts = ["How do I deploy an LLM?", "Qdrant stores vectors."]
    got = embeddings.embed_documents(texts)
    want = Embedder(EmbedderSettings()).embed(texts)
    for a, b in zip(got, want, strict=True):
        assert float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))) > 0.999


def test_an_openai_agents_sdk_agent_calls_its_tool_and_finishes(server: ServerProcess) -> None:
    import agents  # a dev dependency: missing, this fails rather than skips
    from openai import AsyncOpenAI

    agents.set_tracing_disabled(True)
    called: list[str] = []

    @agents.function_tool
    def lookup_weather(city: str) -> str:
        """The weather in a city."""
        called.append(city)
        return f"It is 21 degrees and sunny in {city}."

    async def run() -> object:
        client = AsyncOpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
        agent = agents.Agent(
            name="weather",
            instructions="Look the weather up with lookup_weather.",
            tools=[lookup_weather],
            model=agents.OpenAIChatCompletionsModel(model="twin", openai_client=client),
            model_settings=agents.ModelSettings(tool_choice="required", temperature=0, max_tokens=100),
            # The 135M model keeps calling under "auto" once it has the result (see docs/api/openai.md): the tool's
            # result is the final output here.
            tool_use_behavior="stop_on_first_tool",
        )
        try:
            return await agents.Runner.run(agent, "What is the weather in Paris?", max_turns=3)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert called and called[0]
    assert result.final_output == f"It is 21 degrees and sunny in {called[0]}."  # type: ignore[attr-defined]
