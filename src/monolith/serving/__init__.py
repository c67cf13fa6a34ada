"""Wire requests -> engine calls -> wire responses, shared by the HTTP routes, async jobs and batch lines; one
module per API (chat, completions, responses, rag, embeddings, rerank, tokenize), what they share one module a
job (`services`, `models`, `sampling`, `checks`, `answers`), tool calling by grammar (`tools`), log probabilities
(`logprobs`), and the one table of endpoints every reader of routes dispatches by (`registry`).

Each API has a `plan_*` step that validates and builds the prompt (every 4xx is raised there, so async jobs
and batch lines are rejected at submit time) and a `run_*` / `*_chunks` step that generates.
"""

from monolith.serving.answers import DONE, frame, usage
from monolith.serving.chat import ChatPlan, chat_chunks, message_dicts, plan_chat, retrieve_for_chat, run_chat
from monolith.serving.checks import check_query
from monolith.serving.completions import (
    CompletionPlan,
    completion_chunks,
    plan_completion,
    prompt_count,
    prompt_inputs,
    run_completion,
)
from monolith.serving.models import RAG_SUFFIX, model_names, resolve_model
from monolith.serving.rag import RagPlan, plan_rag, rag_events, run_rag, sources_out
from monolith.serving.sampling import answer_sampling, rag_options
from monolith.serving.services import Services

__all__ = [
    "DONE",
    "RAG_SUFFIX",
    "ChatPlan",
    "CompletionPlan",
    "RagPlan",
    "Services",
    "answer_sampling",
    "chat_chunks",
    "check_query",
    "completion_chunks",
    "frame",
    "message_dicts",
    "model_names",
    "plan_chat",
    "plan_completion",
    "plan_rag",
    "prompt_count",
    "prompt_inputs",
    "rag_events",
    "rag_options",
    "resolve_model",
    "retrieve_for_chat",
    "run_chat",
    "run_completion",
    "run_rag",
    "sources_out",
    "usage",
]
