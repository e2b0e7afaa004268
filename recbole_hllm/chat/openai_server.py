"""OpenAI-compatible chat server (``/v1/chat/completions``) in front of any ChatBackend.

Serving one local model to several clients (``hllm-serve``: :mod:`recbole_hllm.cli.serve`) lets data-building jobs
share it instead of each loading a copy, and gives the tests a real endpoint for
:class:`~recbole_hllm.chat.openai_client.OpenAIChatBackend` without any network.

Generation is far cheaper per request in batches, and backends are not thread-safe, so
handler threads only queue requests: one worker thread takes up to ``max_batch``
pending requests (waiting at most ``batch_wait_ms`` after the first) and calls
``backend.chat`` once for all of them. ``max_batch_seen`` records the largest batch
that reached the backend, i.e. the concurrency actually achieved.

Deliberate differences from OpenAI: no streaming, ``n`` must be 1, the ``model`` field
is not checked, and an omitted ``temperature`` means greedy decoding (the
:class:`ChatRequest` default) rather than OpenAI's 1.0. There is no authentication:
bind to loopback unless the network is trusted.
"""
from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from logging import getLogger
from typing import Self
from urllib.parse import urlsplit

from recbole_hllm import old_paths
from recbole_hllm.chat.backend import ChatBackend, ChatReply, ChatRequest
from recbole_hllm.errors import InvalidInputError

logger = getLogger(__name__)

MAX_BODY_BYTES = 16 * 2 ** 20
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class BadRequest(ValueError):
    """A request body the server cannot serve; ``param`` names the offending field."""

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


@dataclass
class _Pending:
    request: ChatRequest
    reply: ChatReply | None = None
    done: threading.Event = field(default_factory=threading.Event)


class ChatServer:
    """``with ChatServer(backend).start() as server: ... server.url ...``"""

    def __init__(self, backend: ChatBackend, host: str = "127.0.0.1", port: int = 0, max_batch: int = 8,
                 batch_wait_ms: float = 20, model_name: str | None = None):
        if max_batch < 1:
            raise InvalidInputError(f"max_batch must be >= 1, got {max_batch}")
        if batch_wait_ms < 0:
            raise InvalidInputError(f"batch_wait_ms must be >= 0, got {batch_wait_ms}")
        self.backend, self.max_batch, self.batch_wait = backend, max_batch, batch_wait_ms / 1000
        self.model_name = model_name or str(getattr(backend, "model_name", None) or backend.name)
        self.max_batch_seen = 0  # largest batch passed to backend.chat
        self.batches = 0
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._lock = threading.Lock()  # orders submissions against the stop sentinel
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.chat_server = self

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return f"http://{host}:{port}/v1"

    def start(self) -> Self:
        if self._threads:
            raise RuntimeError("ChatServer already started")
        self._threads = [
            threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                             name="chat-server-http", daemon=True),
            threading.Thread(target=self._work, name="chat-server-worker", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting connections, finish queued requests, then stop the worker."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._queue.put(None)
        if self._threads:
            self._httpd.shutdown()
            self._threads[1].join(timeout=60)
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self if self._threads else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def submit(self, request: ChatRequest) -> ChatReply:
        """Queue one request for the worker and wait for its reply (handler threads)."""
        pending = _Pending(request)
        with self._lock:
            if self._stopping:
                return ChatReply(error="server is stopping", finish_reason="error")
            self._queue.put(pending)
        pending.done.wait()
        return pending.reply

    def _work(self) -> None:
        while True:
            batch, stop = self._collect()
            if batch:
                self._run(batch)
            if stop:
                return

    def _collect(self) -> tuple[list[_Pending], bool]:
        """Up to ``max_batch`` pending requests, waiting at most ``batch_wait`` after the
        first; ``True`` once the stop sentinel was seen (nothing is queued after it)."""
        first = self._queue.get()
        if first is None:
            return [], True
        batch, deadline = [first], time.monotonic() + self.batch_wait
        while len(batch) < self.max_batch:
            wait = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self, batch: list[_Pending]) -> None:
        self.max_batch_seen, self.batches = max(self.max_batch_seen, len(batch)), self.batches + 1
        try:
            replies = self.backend.chat([p.request for p in batch])
            if len(replies) != len(batch):
                raise RuntimeError(f"backend returned {len(replies)} replies for {len(batch)} requests")
        except Exception as exc:  # the handlers must get an answer whatever the backend did
            logger.exception("chat backend failed on a batch of %d", len(batch))
            replies = [ChatReply(error=f"backend failed: {type(exc).__name__}: {exc}", finish_reason="error")
                       for _ in batch]
        for pending, reply in zip(batch, replies):
            pending.reply = reply
            pending.done.set()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections
    server_version = "recbole-hllm"
    timeout = 120  # idle keep-alive connections are closed

    @property
    def chat_server(self) -> ChatServer:
        return self.server.chat_server

    def do_GET(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != "/v1/models":
            return self._send_error(404, f"no route GET {self.path}")
        model = {"id": self.chat_server.model_name, "object": "model", "created": 0, "owned_by": "recbole-hllm"}
        self._send(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        if urlsplit(self.path).path.rstrip("/") != "/v1/chat/completions":
            self.close_connection = True  # the body is left unread
            return self._send_error(404, f"no route POST {self.path}")
        try:
            request = parse_chat_request(self._read_json())
        except BadRequest as exc:
            return self._send_error(400, str(exc), param=exc.param)
        reply = self.chat_server.submit(request)
        if not reply.ok:
            return self._send_error(500, reply.error, kind="server_error")
        self._send(200, completion_body(reply, self.chat_server.model_name))

    def _read_json(self):
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise BadRequest("missing or invalid Content-Length header")
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest(f"body of {length} bytes is over the {MAX_BODY_BYTES} byte limit")
        try:
            return json.loads(self.rfile.read(int(length)))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None

    def _send_error(self, status: int, message: str, kind: str = "invalid_request_error",
                    param: str | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:
        logger.debug("%s " + format, self.address_string(), *args)


def parse_chat_request(body) -> ChatRequest:
    """An OpenAI chat-completions body as a :class:`ChatRequest`; :class:`BadRequest`
    names the first missing or invalid field."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    if body.get("stream"):
        raise BadRequest("stream is not supported", "stream")
    if body.get("n") not in (None, 1):
        raise BadRequest("n must be 1", "n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages is missing or not a non-empty list", "messages")
    max_tokens = _given(body, "max_tokens", _given(body, "max_completion_tokens", ChatRequest.max_tokens))
    return ChatRequest(
        messages=[_message(m, i) for i, m in enumerate(messages)],
        max_tokens=_number(max_tokens, "max_tokens", integer=True, low=1),
        temperature=_number(_given(body, "temperature", ChatRequest.temperature), "temperature", low=0),
        top_p=_number(_given(body, "top_p", ChatRequest.top_p), "top_p", low=0, high=1),
        json_schema=_json_schema(body.get("response_format")),
    )


def _json_schema(response_format) -> dict | None:
    """The schema of ``response_format: {type: json_schema, json_schema: {schema: ...}}``."""
    if response_format is None or response_format.get("type") in ("text", None):
        return None
    if response_format.get("type") != "json_schema":
        raise BadRequest("response_format.type must be 'text' or 'json_schema'", "response_format")
    schema = (response_format.get("json_schema") or {}).get("schema")
    if not isinstance(schema, dict):
        raise BadRequest("response_format.json_schema.schema must be a JSON object", "response_format")
    return schema


def _given(body: dict, name: str, default):
    """``body[name]``, or ``default`` when absent or null (some clients send nulls)."""
    value = body.get(name)
    return default if value is None else value


def _message(message, index: int) -> dict:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise BadRequest(f"{where} must be an object with role and content", "messages")
    role, content = message.get("role"), message.get("content")
    if not isinstance(role, str) or not role:
        raise BadRequest(f"{where}.role is missing or not a string", "messages")
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        if not all(isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
                   for p in content):
            raise BadRequest(f"{where}.content: only text parts are supported", "messages")
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise BadRequest(f"{where}.content is missing or not a string", "messages")
    return {"role": role, "content": content}


def _number(value, name: str, integer: bool = False, low: float | None = None, high: float | None = None):
    kinds = (int,) if integer else (int, float)
    if not isinstance(value, kinds) or isinstance(value, bool):
        raise BadRequest(f"{name} must be {'an integer' if integer else 'a number'}, got {value!r}", name)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise BadRequest(f"{name} must be {bounds}, got {value!r}", name)
    return value


def completion_body(reply: ChatReply, model: str) -> dict:
    """The OpenAI ``chat.completion`` object for one reply."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                     "finish_reason": reply.finish_reason}],
        "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                  "total_tokens": reply.prompt_tokens + reply.completion_tokens},
    }


def __getattr__(name):  # the hllm-serve command moved to recbole_hllm.cli.serve (old_paths.MOVED_NAMES)
    return old_paths.moved_name(__name__, name)
