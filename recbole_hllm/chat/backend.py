"""One small interface for chat LLMs used to build training data (local or served).

A backend takes a list of :class:`ChatRequest` and returns one :class:`ChatReply` per
request, in order. A request that failed for good (after the backend's own retries)
comes back as a reply with ``error`` set, so one bad call never loses the rest of a
batch. Backends count their calls and tokens in :class:`ChatStats` for the run summary.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class ChatRequest:
    messages: list[dict]  # [{"role": "system"|"user"|"assistant", "content": str}, ...]
    max_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    json_schema: dict | None = None  # the reply must be JSON of this schema (enforced where supported)


@dataclass
class ChatReply:
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    error: str | None = None  # set when the call failed for good

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ChatStats:
    """Counters shared by a backend's worker threads (hence the lock)."""

    calls: int = 0
    failed_calls: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_reply(self, reply: ChatReply) -> None:
        with self._lock:
            self.calls += 1
            self.failed_calls += 0 if reply.ok else 1
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens

    def add(self, **counts) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def note_in_flight(self, n: int) -> None:
        with self._lock:
            self.max_in_flight = max(self.max_in_flight, n)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class ChatBackend:
    """Base class: subclasses implement :meth:`chat`; ``stats`` collects counters."""

    name = "base"

    def __init__(self) -> None:
        self.stats = ChatStats()

    def chat(self, requests: list[ChatRequest]) -> list[ChatReply]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (threads, connections); the default has none."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
