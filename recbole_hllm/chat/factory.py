"""Build a chat backend from command-line style options (shared by the CLIs)."""
from __future__ import annotations

import os

from recbole_hllm.chat.backend import ChatBackend
from recbole_hllm.errors import InvalidInputError


def make_chat_backend(kind: str, model: str | None = None, base_url: str | None = None,
                      api_key_env: str = "OPENAI_API_KEY", device: str = "cpu", batch_size: int = 8,
                      threads: int | None = None, seed: int = 0, timeout: float = 120.0, retries: int = 5,
                      concurrency: int = 8, send_json_schema: bool = True,
                      model_setting: str = "--model") -> ChatBackend:
    """``local``: ``model`` is ``smollm2`` (default) or a HF directory; ``openai``: ``model``
    is the served name; the API key is read from ``$<api_key_env>`` only."""
    if kind == "local":
        from recbole_hllm.chat.local import LocalChatBackend

        return LocalChatBackend(model or "smollm2", device=device, batch_size=batch_size, threads=threads,
                                stop_at_json=True, seed=seed, model_setting=model_setting)
    if kind == "openai":
        from recbole_hllm.chat.openai_client import OpenAIChatBackend

        return OpenAIChatBackend(base_url=base_url, model=model, api_key=os.environ.get(api_key_env),
                                 timeout=timeout, max_retries=retries, concurrency=concurrency,
                                 send_json_schema=send_json_schema)
    raise InvalidInputError(f"unknown backend {kind!r}: expected 'local' or 'openai'")
