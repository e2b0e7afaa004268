"""OpenAI-compatible client and server: end to end with a tiny local model, retries
against a scripted faulty server, concurrency limits, and that the API key never leaks.

Everything runs on loopback; backoff waits go to a recording no-op ``sleep``.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import pytest

from recbole_hllm.chat.backend import ChatBackend, ChatReply, ChatRequest
from recbole_hllm.chat.openai_client import OpenAIChatBackend
from recbole_hllm.chat.openai_server import ChatServer
from recbole_hllm.cli import serve

FAKE_KEY = "sk-test-DO-NOT-LEAK-4242"


def ask(text: str, max_tokens: int = 8) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=max_tokens)


class Sleeps(list):
    """A ``sleep`` that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- a scripted OpenAI-like server for fault injection -------------------------------------

class ScriptedServer:
    """Answers each POST by the next action scripted for its prompt (then ``ok``).

    Actions: ``"ok"``, ``(status, headers)``, ``"hang"`` (longer than the client
    timeout), ``"malformed"`` (not JSON), ``"nocontent"`` (JSON without choices),
    ``"drop"`` (closes the connection without answering), ``"barrier"`` (waits until
    ``barrier_parties`` requests are in flight together).
    """

    def __init__(self, script: dict[str, list] | None = None, barrier_parties: int = 1):
        self.script = {prompt: list(actions) for prompt, actions in (script or {}).items()}
        self.seen: list[tuple[dict, dict]] = []  # (headers, body) per request
        self.lock, self.release = threading.Lock(), threading.Event()
        self.barrier = threading.Barrier(barrier_parties, timeout=5)
        self.in_flight = self.max_in_flight = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
        self.httpd.scripted = self
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_action(self, headers: dict, body: dict):
        with self.lock:
            self.seen.append((headers, body))
            actions = self.script.get(body["messages"][-1]["content"], [])
            return actions.pop(0) if actions else "ok"


class _ScriptedHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        scripted: ScriptedServer = self.server.scripted
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        action = scripted.next_action(dict(self.headers), body)
        with scripted.lock:
            scripted.in_flight += 1
            scripted.max_in_flight = max(scripted.max_in_flight, scripted.in_flight)
        self._counted = True
        try:
            self._act(action, scripted, body)
        finally:
            self._leave()

    def _leave(self) -> None:
        """This request stops counting as in flight (once). Called before the reply's first
        byte: a client that has its reply may send its next request at once, and counting
        until the handler returns would see that one overlap this one."""
        if getattr(self, "_counted", False):
            self._counted = False
            with self.server.scripted.lock:
                self.server.scripted.in_flight -= 1

    def _act(self, action, scripted: ScriptedServer, body: dict) -> None:
        prompt = body["messages"][-1]["content"]
        if action == "drop":
            self.close_connection = True
            return
        if action == "hang":
            scripted.release.wait(3)
        if action == "barrier":
            scripted.barrier.wait()
        if isinstance(action, tuple):
            status, headers = action
            # a careless server echoing the Authorization header: the client must redact it
            echo = {"error": {"message": f"scripted {status}", "auth": self.headers.get("Authorization")}}
            return self._reply(status, json.dumps(echo).encode(), headers)
        if action == "malformed":
            return self._reply(200, b"<html>502 Bad Gateway</html>")
        if action == "nocontent":
            return self._reply(200, json.dumps({"choices": []}).encode())
        completion = {"choices": [{"message": {"role": "assistant", "content": f"echo {prompt}"},
                                   "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 2}}
        self._reply(200, json.dumps(completion).encode())

    def _reply(self, status: int, data: bytes, headers: dict | None = None) -> None:
        self._leave()
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client timed out and left
            pass

    def log_message(self, format, *args) -> None:
        pass


def client(url: str, **kwargs) -> OpenAIChatBackend:
    kwargs.setdefault("sleep", Sleeps())
    return OpenAIChatBackend(base_url=url, model="scripted", **kwargs)


# --- end to end with the tiny local model -------------------------------------------------

class RecordingBackend(ChatBackend):
    """Passes batches to ``inner`` and remembers each batch with its replies."""

    def __init__(self, inner: ChatBackend):
        super().__init__()
        self.inner, self.batches = inner, []
        self.model_name = "tiny"

    def chat(self, requests: list[ChatRequest]) -> list[ChatReply]:
        replies = self.inner.chat(requests)
        self.batches.append(list(zip(requests, replies)))
        return replies


def test_end_to_end_local_model_batched(tiny_chat_model):
    from recbole_hllm.chat.local import LocalChatBackend

    local = LocalChatBackend(str(tiny_chat_model), batch_size=4)
    recording = RecordingBackend(local)
    requests = [ask(f"tell me about film number {i}", max_tokens=5) for i in range(8)]
    with ChatServer(recording, max_batch=4, batch_wait_ms=200) as server:
        remote = OpenAIChatBackend(base_url=server.url + "/", model="tiny", concurrency=4, sleep=Sleeps())
        replies = remote.chat(requests)
    assert [r.error for r in replies] == [None] * 8
    assert server.max_batch_seen > 1, "concurrent clients should share a generation batch"
    assert sum(len(b) for b in recording.batches) == 8
    # greedy decoding is deterministic for a given batch: replaying the server's batches
    # (with the client's original requests) directly must give the same replies
    for batch in recording.batches:
        originals = [next(r for r in requests if r.messages == served.messages) for served, _ in batch]
        for original, direct in zip(originals, local.chat(originals)):
            reply = replies[requests.index(original)]
            assert (reply.text, reply.prompt_tokens, reply.completion_tokens, reply.finish_reason) == \
                   (direct.text, direct.prompt_tokens, direct.completion_tokens, direct.finish_reason)
    assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in replies)
    stats = remote.stats
    assert (stats.calls, stats.failed_calls, stats.retries) == (8, 0, 0)
    assert stats.prompt_tokens == sum(r.prompt_tokens for r in replies)
    assert stats.completion_tokens == sum(r.completion_tokens for r in replies)
    assert 1 < stats.max_in_flight <= 4


def test_hllm_serve_main_serves_until_interrupted(tiny_chat_model, monkeypatch, capsys):
    answers = []

    def one_call_then_ctrl_c():
        url = capsys.readouterr().out.split(" at ")[1].split()[0]
        answers.extend(OpenAIChatBackend(base_url=url, model="tiny").chat([ask("hello", 3)]))
        raise KeyboardInterrupt

    monkeypatch.setattr(serve, "_wait_forever", one_call_then_ctrl_c)
    assert serve.main(["--model", str(tiny_chat_model), "--port", "0", "--batch-size", "2"]) == 0
    assert answers[0].ok and answers[0].completion_tokens > 0
    assert "stopped after 1 requests" in capsys.readouterr().err


# --- retries and failures -------------------------------------------------------------------

def test_retries_each_transient_failure_then_succeeds():
    script = {"hi": [(429, {"Retry-After": "2"}), (500, {}), "hang", "malformed", "drop", "nocontent",
                     (429, {"Retry-After": "1000"}), (503, {}), "ok"]}
    with ScriptedServer(script) as server:
        sleeps = Sleeps()
        remote = client(server.url, timeout=0.5, max_retries=8, backoff=0.5, backoff_max=5, sleep=sleeps)
        [reply] = remote.chat([ask("hi")])
    assert reply.ok and reply.text == "echo hi" and reply.finish_reason == "stop"
    assert (reply.prompt_tokens, reply.completion_tokens) == (1, 2)
    assert remote.stats.retries == 8 and len(server.seen) == 9
    assert 2 <= sleeps[0] <= 2.2, "Retry-After is honoured"
    assert 1 <= sleeps[1] <= 1.1, "then backoff 0.5 * 2**1 (plus jitter)"
    assert 5 <= sleeps[6] <= 5.5, "a huge Retry-After is capped at backoff_max"
    assert all(s <= 5.5 for s in sleeps)
    assert (remote.stats.calls, remote.stats.failed_calls) == (1, 0)


def test_exhausted_retries_give_an_error_reply_and_the_rest_succeed():
    with ScriptedServer({"bad": [(503, {})] * 10}) as server:
        remote = client(server.url, max_retries=2, concurrency=4)
        replies = remote.chat([ask("a"), ask("bad"), ask("b"), ask("c")])
    assert [r.text for r in replies] == ["echo a", "", "echo b", "echo c"]
    bad = replies[1]
    assert not bad.ok and bad.finish_reason == "error"
    assert "503" in bad.error and server.url in bad.error and "gave up after 2 retries" in bad.error
    assert (remote.stats.calls, remote.stats.failed_calls, remote.stats.retries) == (4, 1, 2)


def test_connection_refused_is_an_error_reply():
    with ScriptedServer() as server:
        url = server.url
    remote = client(url, max_retries=1, timeout=1)
    [reply] = remote.chat([ask("anyone?")])
    assert not reply.ok and url in reply.error and remote.stats.retries == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_not_retried(status):
    with ScriptedServer({"x": [(status, {})]}) as server:
        remote = client(server.url)
        [reply] = remote.chat([ask("x")])
    assert not reply.ok and f"HTTP {status}" in reply.error and server.url in reply.error
    assert remote.stats.retries == 0 and len(server.seen) == 1


def test_concurrency_reaches_and_never_exceeds_the_limit():
    with ScriptedServer({f"p{i}": ["barrier"] for i in range(6)}, barrier_parties=3) as server:
        remote = client(server.url, concurrency=3)
        replies = remote.chat([ask(f"p{i}") for i in range(6)])
    assert [r.text for r in replies] == [f"echo p{i}" for i in range(6)]
    assert server.max_in_flight == 3 and remote.stats.max_in_flight == 3
    assert remote.stats.retries == 0


# --- configuration and the API key ----------------------------------------------------------

def test_missing_url_or_model_names_the_env_var(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match="OPENAI_BASE_URL"):
        OpenAIChatBackend(model="m")
    with pytest.raises(ValueError, match="OPENAI_MODEL"):
        OpenAIChatBackend(base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="http"):
        OpenAIChatBackend(base_url="file:///etc", model="m")
    with pytest.raises(ValueError, match="control characters") as error:
        OpenAIChatBackend(base_url="http://127.0.0.1:1/v1", model="m", api_key=FAKE_KEY + "\nmore")
    assert FAKE_KEY not in str(error.value)


def test_env_vars_and_no_key_means_no_authorization_header(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with ScriptedServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_MODEL", "from-env")
        remote = OpenAIChatBackend()
        assert remote.chat([ask("x")])[0].ok
    headers, body = server.seen[0]
    assert "Authorization" not in headers and body["model"] == "from-env"
    assert body["messages"] == [{"role": "user", "content": "x"}]
    assert (body["max_tokens"], body["temperature"], body["top_p"]) == (8, 0.0, 1.0)


def test_api_key_is_sent_but_never_shown(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY + "\n")  # a trailing newline is stripped
    with ScriptedServer({"auth": [(401, {})], "flaky": [(500, {})] * 5}) as server:
        remote = client(server.url, max_retries=1)
        replies = remote.chat([ask("auth"), ask("flaky"), ask("fine")])
    assert all(h["Authorization"] == f"Bearer {FAKE_KEY}" for h, _ in server.seen)
    auth, flaky, fine = replies
    assert "HTTP 401" in auth.error and "***" in auth.error, "the echoed key is redacted"
    assert "HTTP 500" in flaky.error and fine.ok
    shown = [repr(remote), str(remote), repr(vars(remote)), auth.error, flaky.error, caplog.text,
             repr(remote.stats.as_dict())]
    assert "retry 1/1" in caplog.text and "request failed" in caplog.text
    assert not [text for text in shown if FAKE_KEY in text]
    assert "api_key=set" in repr(remote)


# --- the server -----------------------------------------------------------------------------

class EchoBackend(ChatBackend):
    """Answers ``echo <last message>``; records batch sizes; ``fail`` makes it raise."""

    name = "echo"

    def __init__(self, fail: bool = False):
        super().__init__()
        self.sizes, self.fail = [], fail

    def chat(self, requests: list[ChatRequest]) -> list[ChatReply]:
        if self.fail:
            raise RuntimeError("model exploded")
        self.sizes.append(len(requests))
        time.sleep(0.1)  # a generation step, so concurrent requests queue up
        return [ChatReply(text=f"echo {r.messages[-1]['content']}", prompt_tokens=3,
                          completion_tokens=r.max_tokens, finish_reason="length") for r in requests]


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_server_openai_format_and_micro_batches():
    backend = EchoBackend()
    with ChatServer(backend, max_batch=4, batch_wait_ms=100) as server:
        status, body = post(f"{server.url}/chat/completions", json.dumps(
            {"model": "any", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
             "max_tokens": 3, "temperature": None}).encode())
        with urllib.request.urlopen(f"{server.url}/models", timeout=5) as response:
            models = json.loads(response.read())
        replies = OpenAIChatBackend(base_url=server.url, model="echo", concurrency=6).chat(
            [ask(f"q{i}", max_tokens=i + 1) for i in range(6)])
    assert status == 200 and body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo hi"}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
    assert models["data"][0]["id"] == "echo"
    assert [(r.text, r.completion_tokens) for r in replies] == [(f"echo q{i}", i + 1) for i in range(6)]
    assert server.max_batch_seen == 4 == max(backend.sizes) and sum(backend.sizes) == 7


@pytest.mark.parametrize("body, field", [
    ({"model": "m"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "5"}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": 2}, "top_p"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": True}, "stream"),
    ("not an object", "object"),
])
def test_server_rejects_bad_bodies_with_400(body, field):
    with ChatServer(EchoBackend()) as server:
        status, reply = post(f"{server.url}/chat/completions", json.dumps(body).encode())
        bad_json = post(f"{server.url}/chat/completions", b"{not json")
    assert status == 400 and field in reply["error"]["message"]
    assert bad_json[0] == 400 and "not valid JSON" in bad_json[1]["error"]["message"]


def test_server_unknown_route_and_backend_failure():
    with ChatServer(EchoBackend(fail=True)) as server:
        assert post(f"{server.url}/completions", b"{}")[0] == 404
        remote = OpenAIChatBackend(base_url=server.url, model="m", max_retries=1, sleep=Sleeps())
        [reply] = remote.chat([ask("boom")])
    assert not reply.ok and "HTTP 500" in reply.error and "model exploded" in reply.error
    assert remote.stats.retries == 1
