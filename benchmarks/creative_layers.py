"""How much of SmolLM2 can the creative LLM drop? Zero-shot title loss per layer subset.

Why: an earlier default kept only the first 4 of SmolLM2's 30 layers to train fast on
a CPU, and its titles invented selling points. This measures, with no training, the
cross-entropy (nats per title token) of the reference titles of ``ads-synth`` under
the creative prompt (the user's text profile standing where U would go), for several
layer subsets, and the forward time of each in the same run.

    python benchmarks/creative_layers.py [--rows 48] [--out results/creative_layers.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "dataset" / "ads-synth" / "ads-synth"
SUBSETS = {
    "first 4": list(range(4)),
    "first 8": list(range(8)),
    "first 12": list(range(12)),
    "0-3 + 26-29": [0, 1, 2, 3, 26, 27, 28, 29],
    "0-9 + 20-29": list(range(10)) + list(range(20, 30)),
    "every 2nd": list(range(0, 30, 2)) + [29],
    "all 30": list(range(30)),
}


def read_rows(n_rows: int) -> tuple[list[str], list[str]]:
    with open(f"{DATA}.item", encoding="utf-8") as f:
        items = {r["item_id:token"]: r for r in csv.DictReader(f, delimiter="\t")}
    with open(f"{DATA}.creative", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[:n_rows]
    prompts = [f"Rewrite the ad title for this user.\nUser: {r['profile:token_seq']}\n"
               f"Ad: {items[r['item_id:token']]['description:token_seq']}\nTitle:" for r in rows]
    return prompts, [" " + r["title:token_seq"] for r in rows]


@torch.no_grad()
def title_loss(model, tokenizer, prompts, targets) -> float:
    total, count = 0.0, 0
    for prompt, target in zip(prompts, targets):
        prompt_ids = tokenizer(prompt)["input_ids"]
        target_ids = tokenizer(target)["input_ids"] + [tokenizer.eos_token_id]
        logits = model(input_ids=torch.tensor([prompt_ids + target_ids])).logits[0, len(prompt_ids) - 1 : -1]
        total += nn.functional.cross_entropy(logits, torch.tensor(target_ids), reduction="sum").item()
        count += len(target_ids)
    return total / count


def keep_layers(model, all_layers: nn.ModuleList, indices: list[int]) -> None:
    model.model.layers = nn.ModuleList(all_layers[i] for i in indices)
    for position, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = position  # the KV cache is indexed by position
    model.config.num_hidden_layers = len(indices)


def main() -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recbole_hllm.llm.embedded import embedded_model_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "creative_layers.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = embedded_model_dir("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    all_layers = model.model.layers
    prompts, targets = read_rows(args.rows)
    results = []
    for name, indices in SUBSETS.items():
        keep_layers(model, all_layers, indices)
        start = time.perf_counter()
        loss = title_loss(model, tokenizer, prompts, targets)
        results.append({"layers": name, "n_layers": len(indices), "title_loss": round(loss, 3),
                        "forward_s": round(time.perf_counter() - start, 2)})
        print(f"{name:>14}  {len(indices):2d} layers  loss {loss:6.3f} nats/token  "
              f"{results[-1]['forward_s']:5.1f}s", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": args.rows, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
