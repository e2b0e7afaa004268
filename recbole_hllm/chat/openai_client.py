"""Chat backend for any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, OpenAI, ...).

Building training data with a served model is dominated by network waits, so requests
run concurrently (at most ``concurrency`` HTTP calls in flight) and a served model can
batch them. Servers under load answer 429/5xx, time out or drop connections: those
calls are retried with capped exponential backoff (honouring ``Retry-After``), while a
request that fails for good comes back as an error reply instead of losing the batch.

Only the standard library is used (``urllib``), so no new dependency. The API key is
kept in a wrapper that never shows it: it is not in ``repr()``, logs or error messages
(a server that echoes the key in an error body is redacted too).
"""
from __future__ import annotations

import http.client
import json
import math
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from logging import getLogger

from recbole_hllm.chat.backend import ChatBackend, ChatReply, ChatRequest

logger = getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429}  # plus every 5xx; other 4xx (400, 401, 403, 404, ...) fail at once
ERROR_BODY_CHARS = 300  # how much of a server's error body goes into an error message


class _Secret:
    """Holds the API key; every way of printing it shows ``***``."""

    def __init__(self, value: str | None):
        value = (value or "").strip() or None  # env files often leave a trailing newline
        if value is not None and not value.isprintable():
            # http.client would reject it with an error that quotes the header
            raise ValueError("the API key contains control characters (a line break inside it?)")
        self.value = value

    def __repr__(self) -> str:
        return "***" if self.value else "None"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        return text.replace(self.value, "***") if self.value else text


class _Retryable(Exception):
    """A failed attempt worth retrying; ``retry_after`` is the server's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failed attempt that retrying cannot fix (bad request, bad key, no such model)."""


class OpenAIChatBackend(ChatBackend):
    name = "openai"

    def __init__(self, base_url: str | None = None, model: str | None = None, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 5, backoff: float = 1.0, backoff_max: float = 30.0,
                 concurrency: int = 8, sleep: Callable[[float], None] = time.sleep,
                 send_json_schema: bool = True):
        """``base_url`` like ``http://127.0.0.1:8000/v1``; ``base_url``, ``model`` and ``api_key``
        default to ``OPENAI_BASE_URL``, ``OPENAI_MODEL`` and ``OPENAI_API_KEY``. No key (a local
        server): no ``Authorization`` header. ``backoff``: first retry delay in seconds, doubled
        per retry up to ``backoff_max``. ``sleep`` is injectable so tests skip real waits.
        ``send_json_schema``: pass a request's schema as ``response_format`` (turn off for
        servers that reject the field; replies are validated either way)."""
        super().__init__()
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        model = model or os.environ.get("OPENAI_MODEL")
        if not base_url:
            raise ValueError("no server URL: pass base_url (--base-url) or set OPENAI_BASE_URL, "
                             "e.g. http://127.0.0.1:8000/v1")
        if not model:
            raise ValueError("no model name: pass model (--model) or set OPENAI_MODEL "
                             "(the name the server lists under /v1/models)")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        _check_positive(timeout=timeout, concurrency=concurrency, backoff_max=backoff_max)
        if max_retries < 0 or backoff < 0:
            raise ValueError(f"max_retries and backoff must be >= 0, got {max_retries} and {backoff}")
        self.base_url, self.model = base_url.rstrip("/"), model
        self.url = f"{self.base_url}/chat/completions"
        self._api_key = _Secret(api_key or os.environ.get("OPENAI_API_KEY"))
        self.timeout, self.max_retries, self.concurrency = timeout, max_retries, concurrency
        self.backoff, self.backoff_max, self.sleep = backoff, backoff_max, sleep
        self._in_flight, self._in_flight_lock = 0, threading.Lock()
        self.send_json_schema = send_json_schema

    @property
    def identity(self) -> str:
        """What the outputs depend on (a resumed run must use the same model)."""
        return f"openai:{self.model}"

    def __repr__(self) -> str:
        key = "set" if self._api_key.value else "none"
        return (f"OpenAIChatBackend(base_url={self.base_url!r}, model={self.model!r}, api_key={key}, "
                f"concurrency={self.concurrency}, max_retries={self.max_retries})")

    def chat(self, requests: list[ChatRequest]) -> list[ChatReply]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)),
                                thread_name_prefix="openai-chat") as pool:
            replies = list(pool.map(self._chat_one, requests))
        for reply in replies:
            self.stats.add_reply(reply)
        return replies

    def _chat_one(self, request: ChatRequest) -> ChatReply:
        """One request with retries; never raises (a failure is an error reply)."""
        try:
            return self._with_retries(self._payload(request))
        except Exception as exc:  # noqa: BLE001  (a bug or odd client error must not lose the other requests)
            return self._error(f"{type(exc).__name__}: {exc} ({self.url})")

    def _payload(self, request: ChatRequest) -> bytes:
        body = {"model": self.model, "messages": request.messages, "max_tokens": request.max_tokens,
                "temperature": request.temperature, "top_p": request.top_p}
        if request.json_schema and self.send_json_schema:
            # OpenAI's structured-output field, also honoured by vLLM and hllm-serve
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "reply", "schema": request.json_schema}}
        return json.dumps(body).encode("utf-8")

    def _with_retries(self, payload: bytes) -> ChatReply:
        for attempt in range(self.max_retries + 1):
            try:
                return self._post(payload)
            except _Fatal as exc:
                return self._error(str(exc))
            except _Retryable as exc:
                if attempt == self.max_retries:
                    return self._error(f"{exc} (gave up after {self.max_retries} retries)")
                delay = self._delay(attempt, exc.retry_after)
                logger.debug("openai chat: %s; retry %d/%d in %.2fs", exc, attempt + 1, self.max_retries, delay)
                self.stats.add(retries=1)
                self.sleep(delay)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before retry ``attempt + 1``: the server's ``Retry-After`` if given, else
        ``backoff * 2**attempt``; capped at ``backoff_max``, plus up to 10% jitter so
        concurrent workers do not retry in lockstep."""
        delay = retry_after if retry_after is not None else self.backoff * 2 ** attempt
        delay = min(max(delay, 0.0), self.backoff_max)
        return delay + random.uniform(0, 0.1 * delay)

    def _post(self, payload: bytes) -> ChatReply:
        """One HTTP call; raises :class:`_Retryable` or :class:`_Fatal` on failure."""
        http_request = urllib.request.Request(self.url, data=payload, method="POST", headers=self._headers())
        self._enter()
        try:
            with urllib.request.urlopen(http_request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise self._http_failure(exc) from None
        except (TimeoutError, urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise _Retryable(self._redact(f"{type(exc).__name__} ({reason}) from {self.url}")) from None
        finally:
            self._leave()
        return self._parse(body)

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "recbole-hllm"}
        if self._api_key.value:
            headers["Authorization"] = f"Bearer {self._api_key.value}"
        return headers

    def _http_failure(self, exc: urllib.error.HTTPError) -> Exception:
        try:
            detail = exc.read(2 ** 16).decode("utf-8", "replace")
        except OSError:
            detail = ""
        finally:
            exc.close()
        detail = " ".join(self._redact(detail).split())[:ERROR_BODY_CHARS]  # redact before cutting the key
        message = f"HTTP {exc.code} from {self.url}" + (f": {detail}" if detail else "")
        if exc.code in RETRY_STATUS or exc.code >= 500:
            return _Retryable(message, _retry_after(exc.headers.get("Retry-After")))
        return _Fatal(message)

    def _parse(self, body: bytes) -> ChatReply:
        """A chat-completion body as a reply; a body that is not one is worth a retry
        (proxies under load answer HTML or truncated JSON)."""
        try:
            data = json.loads(body)
            choice = data["choices"][0]
            text = choice["message"]["content"]
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Retryable(f"malformed reply from {self.url} ({type(exc).__name__}: {exc})") from None
        usage = data.get("usage") or {}
        return ChatReply(text=text, prompt_tokens=_int(usage.get("prompt_tokens")),
                         completion_tokens=_int(usage.get("completion_tokens")),
                         finish_reason=choice.get("finish_reason") or "stop")

    def _error(self, message: str) -> ChatReply:
        message = self._redact(message)
        logger.warning("openai chat: request failed: %s", message)
        return ChatReply(error=message, finish_reason="error")

    def _redact(self, text: str) -> str:
        return self._api_key.redact(text)

    def _enter(self) -> None:
        with self._in_flight_lock:
            self._in_flight += 1
            self.stats.note_in_flight(self._in_flight)

    def _leave(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is rare for APIs: ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is None or not math.isnan(seconds) else None


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")
