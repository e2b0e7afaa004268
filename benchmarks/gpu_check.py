"""The GPU check: what a CUDA machine shows about this package, in under 10 minutes.

    python -m benchmarks.gpu_check [--out gpu-check.json] [--skip suite,creator,paper]
        [--tokenizer DIR] [--item-llm minilm] [--peak-tflops 989] [--paper-steps 30]
    python -m benchmarks.gpu_check --tiny --device cpu     # a 1-minute smoke run of the script itself

Three parts, each in its own subprocess with its own timeout (one failing part does not
stop the others), each printing one summary line:

1. **suite**: the test suite on the GPU (``pytest --device cuda``, float32 comparisons),
   then the pytest summary line;
2. **creator**: the default ``run_recbole --model=HLLMCreator`` pipeline (user-side warm-up,
   joint epoch, 1,000 test titles and the shuffled-U pass) with its own backbones or, with
   ``--creative-llm random``, random weights in SmolLM2's shape: wall time per phase and
   peak GPU memory;
3. **paper**: HLLM at the paper's size, item and user LLM both TinyLlama-1.1B-shaped
   (random weights, full tuning, [ITEM] token, bf16 compute, float32 weights) on ml-100k:
   seconds per step, item-LLM tokens/s, estimated MFU (6 x trainable parameters x tokens
   per second over ``--peak-tflops``) and peak allocated / reserved GPU memory, once with
   the item LLM's activations kept and once with ``item_llm_checkpointing``.

Writes every figure to ``--out`` (JSON). ``--tiny`` shrinks every model and run so the
script itself can be checked on a CPU; its figures mean nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINYLLAMA_1B = {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22,
                "num_attention_heads": 32, "num_key_value_heads": 4, "max_position_embeddings": 2048,
                "rms_norm_eps": 1e-5}
TINY = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256}
SMOLLM2_SHAPE = {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
                 "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 8192,
                 "tie_word_embeddings": True, "rms_norm_eps": 1e-5, "rope_theta": 100000}


# -- parts ---------------------------------------------------------------------------------------
def part_suite(args) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", str(args.workers),
           "-p", "no:cacheprovider", "tests", "--device", args.device]
    if args.tiny:
        cmd += ["-k", "device or trained_item_llm"]
    start = time.perf_counter()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=args.suite_timeout)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-500:]
        return {"error": f"timed out after {args.suite_timeout} s", "tail": tail.decode(errors="replace")
                if isinstance(tail, bytes) else tail}
    lines = [line for line in out.stdout.splitlines() if " passed" in line or " failed" in line or "error" in line]
    failed = [line for line in out.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"summary": lines[-1] if lines else out.stdout[-500:], "failed": failed[:40], "rc": out.returncode,
            "seconds": round(time.perf_counter() - start, 1)}


def creator_settings(args) -> dict:
    settings = {"show_progress": False, "use_gpu": args.device == "cuda"}
    if args.creative_llm == "random":
        settings.update(creative_llm="random", creative_llm_config=SMOLLM2_SHAPE if not args.tiny else TINY,
                        creative_llm_tokenizer=args.tokenizer or "smollm2",
                        user_llm="random", user_llm_config=dict(SMOLLM2_SHAPE, num_hidden_layers=2) if not args.tiny
                        else TINY, user_llm_tokenizer=args.tokenizer or "smollm2")
    if args.item_llm != "minilm":
        settings.update(item_llm=args.item_llm)
    if args.tiny:
        settings.update(epochs=2, user_warmup_epochs=1, generation_max_new_tokens=4, creative_tuned_layers=None,
                        item_llm="random", item_llm_config=TINY, item_llm_tokenizer=args.tokenizer or "minilm")
    return settings


def part_creator(args) -> dict:
    """The default pipeline in a subprocess: phase times from RecBole's log lines."""
    code = ("import json, sys, time, torch; import recbole_hllm; from recbole.quick_start import run_recbole\n"
            "start = time.perf_counter()\n"
            f"result = run_recbole(model='HLLMCreator', dataset='ads-synth', config_dict=json.loads({json.dumps(json.dumps(creator_settings(args)))}))\n"
            "peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None\n"
            "keys = ('rouge-l', 'interest_hit', 'u_gain')\n"
            "print('RESULT ' + json.dumps({'wall_s': round(time.perf_counter() - start, 1), 'peak_gib': peak,"
            " **{k: float(v) for k, v in result['test_result'].items() if k in keys}}))\n")
    start = time.perf_counter()
    os.makedirs(args.work_dir, exist_ok=True)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=args.work_dir,
                             timeout=args.creator_timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.creator_timeout} s"}
    phases = [line.split(" INFO  ", 1)[-1][:140] for line in (out.stdout + out.stderr).splitlines()
              if "training [time:" in line or "generated" in line.lower() and "titles" in line.lower()]
    row = {"rc": out.returncode, "seconds": round(time.perf_counter() - start, 1), "phases": phases}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            row.update(json.loads(line[7:]))
    if out.returncode:
        row["error"] = out.stderr[-1500:]
    return row


def part_paper(args, checkpointing: bool) -> dict:
    """Paper-size HLLM steps, in this (child) process."""
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    import recbole_hllm  # noqa: F401
    from recbole_hllm.model.hllm import HLLM

    shape = TINY if args.tiny else TINYLLAMA_1B
    settings = {"seed": 2020, "state": "WARNING", "show_progress": False, "use_gpu": args.device == "cuda",
                "item_llm": "random", "item_llm_config": shape, "item_llm_tokenizer": args.tokenizer or "smollm2",
                "item_llm_tuning": "full", "item_llm_dtype": "bfloat16", "item_pooling": "item_token",
                "item_llm_checkpointing": checkpointing, "user_llm": "random", "user_llm_config": shape,
                "user_llm_tokenizer": args.tokenizer or "smollm2", "user_llm_layers": None,
                "user_llm_tuning": "full", "user_llm_dtype": "bfloat16", "train_batch_size": 16}
    argv, sys.argv = sys.argv, sys.argv[:1]
    config = Config(model="HLLM", dataset="ml-100k", config_dict=settings)
    sys.argv = argv
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    model = HLLM(config, train._dataset)
    device = model.item_encoder.device
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
    encoder = model.item_encoder
    mean_item_tokens = float(encoder.text_lengths[1:].float().mean()) + 1  # + [ITEM]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps = len(train) if args.paper_steps <= 0 else min(args.paper_steps, len(train))
    times, item_tokens, user_tokens = [], 0, 0
    for step, batch in enumerate(train):
        if step > steps:
            break
        batch = batch.to(device)
        before = encoder.items_encoded
        sync()
        start = time.perf_counter()
        model.calculate_loss(batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if step:  # step 0 warms up kernels and the allocator
            times.append(time.perf_counter() - start)
            item_tokens += (encoder.items_encoded - before) / (2 if checkpointing else 1) * mean_item_tokens
            user_tokens += int((batch[model.ITEM_SEQ] > 0).sum())
    seconds = sum(times)
    item_params = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    user_params = sum(p.numel() for p in model.user_encoder.parameters() if p.requires_grad)
    flops = 6 * (item_params * item_tokens + user_params * user_tokens)
    row = {"checkpointing": checkpointing, "steps": len(times), "s_per_step": round(seconds / len(times), 4),
           "item_tokens_per_s": round(item_tokens / seconds), "trainable_params": item_params + user_params,
           "tflops": round(flops / seconds / 1e12, 2), "mfu": round(flops / seconds / (args.peak_tflops * 1e12), 4)}
    if device.type == "cuda":
        row.update(peak_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
                   peak_reserved_gib=round(torch.cuda.max_memory_reserved() / 2**30, 2))
    return row


def run_part(args, name: str, extra: list[str], timeout: float) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--part", name, *extra, *passthrough(args)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in out.stdout.splitlines():
        if line.startswith("PART "):
            return json.loads(line[5:])
    return {"rc": out.returncode, "error": out.stderr[-1500:]}


def passthrough(args) -> list[str]:
    flags = ["--device", args.device, "--peak-tflops", str(args.peak_tflops), "--paper-steps", str(args.paper_steps),
             "--creative-llm", args.creative_llm, "--item-llm", args.item_llm, "--work-dir", args.work_dir]
    if args.tokenizer:
        flags += ["--tokenizer", args.tokenizer]
    return flags + (["--tiny"] if args.tiny else [])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--out", default="gpu-check.json")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: suite, creator, paper")
    p.add_argument("--tokenizer", help="tokenizer for random-weight models (embedded name or directory; "
                                        "default: smollm2)")
    p.add_argument("--creative-llm", default="random", choices=["random", "default"],
                   help="random: SmolLM2-shaped random weights (no GGUF needed); default: the shipped backbones")
    p.add_argument("--item-llm", default="minilm", help="the creator's item LLM (a directory, or minilm)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the device's dense bf16 peak (H100/H200: 989)")
    p.add_argument("--paper-steps", type=int, default=30, help="timed steps (0: a whole epoch)")
    p.add_argument("--workers", type=int, default=4, help="pytest-xdist workers for the suite")
    p.add_argument("--suite-timeout", type=float, default=300)
    p.add_argument("--creator-timeout", type=float, default=240)
    p.add_argument("--paper-timeout", type=float, default=150)
    p.add_argument("--work-dir", default=os.environ.get("TMPDIR", "/tmp"), help="where RecBole writes log/ and saved/")
    p.add_argument("--tiny", action="store_true", help="tiny models: check the script on a CPU")
    p.add_argument("--part", help=argparse.SUPPRESS)
    p.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.part:  # one part, in this child process
        row = part_paper(args, args.checkpointing) if args.part == "paper" else \
            {"suite": part_suite, "creator": part_creator}[args.part](args)
        print("PART " + json.dumps(row), flush=True)
        return 0
    skip = set(filter(None, args.skip.split(",")))
    report = {"device": args.device, "tiny": args.tiny}
    if args.device == "cuda":
        import torch

        report["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none visible"
    if "suite" not in skip:
        report["suite"] = run_part(args, "suite", [], args.suite_timeout + 30)
        print(f"suite: {report['suite'].get('summary', report['suite'])} ({report['suite'].get('seconds')} s)",
              flush=True)
    if "creator" not in skip:
        report["creator"] = run_part(args, "creator", [], args.creator_timeout + 30)
        c = report["creator"]
        print(f"creator: rc {c.get('rc')}, {c.get('wall_s')} s, peak {c.get('peak_gib')} GiB, "
              f"rouge-l {c.get('rouge-l')}, interest_hit {c.get('interest_hit')}; {c.get('phases')}", flush=True)
    if "paper" not in skip:
        for checkpointing in (False, True):
            key = "paper_checkpointing" if checkpointing else "paper"
            report[key] = run_part(args, "paper", ["--checkpointing"] if checkpointing else [], args.paper_timeout)
            print(f"{key}: {report[key]}", flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
