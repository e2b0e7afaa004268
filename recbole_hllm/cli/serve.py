"""OpenAI-compatible chat server (``/v1/chat/completions``) in front of any ChatBackend.

The ``hllm-serve`` command: one local model (:class:`~recbole_hllm.chat.local.LocalChatBackend`)
served by :class:`~recbole_hllm.chat.openai_server.ChatServer` until Ctrl-C or SIGTERM,
then one summary line. There is no authentication: bind to loopback unless the network
is trusted.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from pathlib import Path

from recbole_hllm.chat.openai_server import LOOPBACK, ChatServer
from recbole_hllm.cli.common import add_debug_flag, run_console
from recbole_hllm.errors import InvalidInputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hllm-serve", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2", help="an embedded model name or a Hugging Face model directory")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (no authentication: keep it on loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    parser.add_argument("--batch-size", type=int, default=8, help="largest batch of requests generated together")
    parser.add_argument("--batch-wait-ms", type=float, default=20, help="how long a batch waits for more requests")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16")
    parser.add_argument("--served-model-name", default=None, help="name under /v1/models (default: the model's name)")
    add_debug_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_console("hllm-serve", lambda: _serve(args), debug=args.debug)


def _serve(args) -> int:
    # torch and transformers are imported only when serving
    from recbole_hllm.chat.local import LocalChatBackend

    backend = LocalChatBackend(args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                               threads=args.threads)
    try:
        server = ChatServer(backend, args.host, args.port, max_batch=args.batch_size,
                            batch_wait_ms=args.batch_wait_ms,
                            model_name=args.served_model_name or Path(args.model).name)
    except OSError as exc:  # e.g. the port is taken
        raise InvalidInputError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    if args.host not in LOOPBACK:
        print(f"hllm-serve: warning: listening on {args.host} without authentication", file=sys.stderr)
    with server.start(), _stopped_by_sigterm():
        print(f"hllm-serve: serving {server.model_name} at {server.url} (batch {args.batch_size}); "
              "Ctrl-C to stop", flush=True)
        try:
            _wait_forever()
        except KeyboardInterrupt:
            pass
    print(f"hllm-serve: stopped after {backend.stats.calls} requests, largest batch {server.max_batch_seen}",
          file=sys.stderr)
    return 0


@contextlib.contextmanager
def _stopped_by_sigterm():
    """SIGTERM (a service manager, ``kill``) stops the server as Ctrl-C does, with the
    summary line; SIGINT alone is not enough, since a shell starting the server in the
    background without job control makes it ignore SIGINT."""
    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_forever() -> None:
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
