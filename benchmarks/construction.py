"""Throughput of the chain-of-thought construction with the embedded local model.

    python benchmarks/construction.py [--users 3] [--ads-per-user 2] [--threads 2] [--out-dir results]

All measured in one run, on the same prompts:

1. raw generation: 16 rewrite-step prompts, 48 new tokens each (no early stop, so
   every setting generates the same token count), batch 1 vs batch 8: tokens/s;
2. the whole pipeline (profile, rewrite, verdict; schema-constrained) on ml-100k for
   ``--users`` users x ``--ads-per-user`` ads, batch 1 vs batch 8: pairs/minute;
3. the OpenAI-compatible path: the same 16 prompts sent by ``OpenAIChatBackend`` to
   ``hllm-serve``'s server on loopback (micro-batching up to 8) with concurrency 1 vs
   8: tokens/s, and the concurrency reached (requests in flight, largest server batch).

Writes ``construction.json`` and ``construction.md`` to ``--out-dir``.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rewrite_prompts(source, settings, n: int) -> list[list[dict]]:
    from recbole_hllm.construction.builder import BuildOptions, CreativeBuilder

    builder = CreativeBuilder(source, None, settings, BuildOptions(out="unused"))
    profile = settings["examples"]["profile"][0]["answer"]
    items = source.items[:n]
    return [builder._messages("rewrite", builder._rewrite_prompt(profile, item)) for item in items]


def raw_generation(backend, conversations, max_tokens: int) -> dict:
    from recbole_hllm.chat.backend import ChatRequest

    start = time.perf_counter()
    replies = backend.chat([ChatRequest(c, max_tokens=max_tokens) for c in conversations])
    seconds = time.perf_counter() - start
    tokens = sum(r.completion_tokens for r in replies)
    return {"seconds": round(seconds, 1), "completion_tokens": tokens, "tokens_per_second": round(tokens / seconds, 2)}


def pipeline(source, settings, backend, users: int, ads_per_user: int) -> dict:
    from recbole_hllm.construction.builder import BuildOptions, CreativeBuilder

    with tempfile.TemporaryDirectory() as tmp:
        options = BuildOptions(out=f"{tmp}/bench.creative", n_users=users, ads_per_user=ads_per_user,
                               chunk_users=users, progress=False)
        summary = CreativeBuilder(source, backend, settings, options).run()
    return {"seconds": summary.wall_seconds, "pairs": summary.pairs, "pairs_per_minute": summary.pairs_per_minute,
            "completion_tokens": summary.completion_tokens,
            "tokens_per_second": summary.completion_tokens_per_second, "kept": summary.kept,
            "rejected": summary.rejected}


def served(backend, conversations, max_tokens: int, concurrency: int) -> dict:
    from recbole_hllm.chat.backend import ChatRequest
    from recbole_hllm.chat.openai_client import OpenAIChatBackend
    from recbole_hllm.chat.openai_server import ChatServer

    with ChatServer(backend, max_batch=8, batch_wait_ms=50) as server:
        client = OpenAIChatBackend(base_url=server.url, model="smollm2", concurrency=concurrency, timeout=600)
        start = time.perf_counter()
        replies = client.chat([ChatRequest(c, max_tokens=max_tokens) for c in conversations])
        seconds = time.perf_counter() - start
    tokens = sum(r.completion_tokens for r in replies)
    return {"seconds": round(seconds, 1), "completion_tokens": tokens, "tokens_per_second": round(tokens / seconds, 2),
            "ok": sum(r.ok for r in replies), "max_in_flight": client.stats.max_in_flight,
            "largest_server_batch": server.max_batch_seen}


class FixedLength:
    """Wraps a LocalChatBackend so every reply runs exactly ``max_tokens`` steps."""

    def __init__(self, backend):
        self.backend = backend

    def __enter__(self):
        self.stop_at_json, self.backend.stop_at_json = self.backend.stop_at_json, False
        self.original = self.backend.model.generate
        self.backend.model.generate = lambda **kw: self.original(min_new_tokens=kw["max_new_tokens"], **kw)
        return self.backend

    def __exit__(self, *exc):
        self.backend.model.generate = self.original
        self.backend.stop_at_json = self.stop_at_json


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--ads-per-user", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out-dir", default=str(ROOT / "results"))
    args = parser.parse_args(argv)

    from recbole_hllm.chat.local import LocalChatBackend
    from recbole_hllm.construction.prompts import load_settings
    from recbole_hllm.construction.source import load_source

    settings = load_settings()
    source = load_source("ml-100k")
    backend = LocalChatBackend("smollm2", threads=args.threads, stop_at_json=True)
    conversations = rewrite_prompts(source, settings, args.prompts)
    results = {"threads": args.threads, "prompts": args.prompts, "max_tokens": args.max_tokens}
    with FixedLength(backend):
        for batch in (1, 8):
            backend.batch_size = batch
            results[f"raw_batch{batch}"] = raw_generation(backend, conversations, args.max_tokens)
            print(f"raw batch {batch}: {results[f'raw_batch{batch}']}", flush=True)
        backend.batch_size = 8
        for concurrency in (1, 8):
            results[f"served_concurrency{concurrency}"] = served(backend, conversations, args.max_tokens, concurrency)
            print(f"served concurrency {concurrency}: {results[f'served_concurrency{concurrency}']}", flush=True)
    for batch in (1, 8):
        backend.batch_size = batch
        results[f"pipeline_batch{batch}"] = pipeline(source, settings, backend, args.users, args.ads_per_user)
        print(f"pipeline batch {batch}: {results[f'pipeline_batch{batch}']}", flush=True)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "construction.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "construction.md").write_text(markdown(results))
    print(markdown(results))
    return 0


def markdown(r: dict) -> str:
    raw1, raw8 = r["raw_batch1"], r["raw_batch8"]
    s1, s8 = r["served_concurrency1"], r["served_concurrency8"]
    p1, p8 = r["pipeline_batch1"], r["pipeline_batch8"]
    lines = [
        f"Embedded SmolLM2-135M on CPU, {r['threads']} threads; {r['prompts']} rewrite prompts x "
        f"{r['max_tokens']} new tokens.\n",
        "| setting | seconds | completion tokens | tokens/s | speed-up |",
        "|---|---|---|---|---|",
        f"| local, batch 1 | {raw1['seconds']} | {raw1['completion_tokens']} | {raw1['tokens_per_second']} | 1.0x |",
        f"| local, batch 8 | {raw8['seconds']} | {raw8['completion_tokens']} | {raw8['tokens_per_second']} | "
        f"{raw8['tokens_per_second'] / raw1['tokens_per_second']:.1f}x |",
        f"| served (loopback), concurrency 1 | {s1['seconds']} | {s1['completion_tokens']} | "
        f"{s1['tokens_per_second']} | {s1['tokens_per_second'] / raw1['tokens_per_second']:.1f}x |",
        f"| served (loopback), concurrency 8 | {s8['seconds']} | {s8['completion_tokens']} | "
        f"{s8['tokens_per_second']} | {s8['tokens_per_second'] / raw1['tokens_per_second']:.1f}x |",
        "",
        f"Concurrency reached against the server: {s8['max_in_flight']} requests in flight, largest server "
        f"batch {s8['largest_server_batch']} (concurrency 1: {s1['max_in_flight']} / {s1['largest_server_batch']}).",
        "",
        "| whole pipeline on ml-100k | pairs | seconds | pairs/minute | tokens/s | kept | rejected |",
        "|---|---|---|---|---|---|---|",
        f"| batch 1 | {p1['pairs']} | {p1['seconds']} | {p1['pairs_per_minute']} | {p1['tokens_per_second']} | "
        f"{p1['kept']} | {p1['rejected']} |",
        f"| batch 8 | {p8['pairs']} | {p8['seconds']} | {p8['pairs_per_minute']} | {p8['tokens_per_second']} | "
        f"{p8['kept']} | {p8['rejected']} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
