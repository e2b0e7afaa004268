"""HLLMCreator on tiny random models: losses, soft token, generation, data, checkpoints."""
import json
import subprocess
import sys

import pytest
import torch
import yaml
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.quick_start import load_data_and_model, run_recbole
from recbole.utils import init_seed

from recbole_hllm.data.creative import CreativeFileError, read_creative_file
from recbole_hllm.data.creative_dataset import CREATIVE_INDEX
from recbole_hllm.model.creative_llm import PromptTemplate, TemplateError, clean_generation
from recbole_hllm.model.hllm_creator import LOSS_NAMES, HLLMCreator

from conftest import build_model, console_script, subprocess_env, tiny_creator_config


def build(data_root, **overrides):
    return build_model(HLLMCreator, tiny_creator_config(data_root, **overrides))


def _only(loss_name):
    return {f"{n}_loss_weight": float(n == loss_name) for n in LOSS_NAMES}


def _batch_with_creative(train, device):
    for batch in train:
        if (batch[CREATIVE_INDEX] >= 0).sum() > 1:
            return batch.to(device)
    raise AssertionError("no training batch with creative rows")


GROUPS = {
    "user_llm": "user_encoder.llm.", "user_token": "user_token", "creative_llm": "creative.llm.",
    "to_creative": "user_to_creative.", "to_profile": "user_to_profile.", "match": "matching_head.",
    "align": "align_proj.", "logit_scale": "logit_scale.",
}


@pytest.mark.parametrize("mode", ["prefix", "soft_token"])
@pytest.mark.parametrize("loss,expected,absent", [
    ("rec", {"user_llm", "logit_scale"}, {"user_token", "creative_llm", "to_creative", "match", "align"}),
    ("creative", {"user_llm", "user_token", "creative_llm", "to_creative"}, {"to_profile", "match", "align"}),
    ("match", {"user_llm", "user_token", "match"}, {"creative_llm", "to_creative", "align", "to_profile"}),
    ("align", {"user_llm", "user_token", "align"}, {"creative_llm", "to_creative", "match", "to_profile"}),
    ("recon", {"user_llm", "user_token", "creative_llm", "to_profile"}, {"to_creative", "match", "align"}),
])
def test_each_loss_trains_exactly_its_parameters(tiny_creative_data, loss, expected, absent, mode):
    """In either injection mode the title loss reaches the U -> creative-LLM map and,
    through U, the user LLM and [USER]."""
    model, train, _, _ = build(tiny_creative_data, user_injection=mode, **_only(loss))
    losses = model.calculate_loss(_batch_with_creative(train, model.device))
    assert len(losses) == 1 and torch.isfinite(losses[0])
    losses[0].backward()
    touched = {g for g, prefix in GROUPS.items() for n, p in model.named_parameters()
               if n.startswith(prefix) and p.grad is not None and p.grad.abs().sum() > 0}
    assert expected <= touched, (loss, touched)
    assert not (absent & touched), (loss, touched)


def test_switching_losses_off_removes_them(tiny_creative_data):
    model, train, _, _ = build(tiny_creative_data, match_loss_weight=0.0, recon_loss_weight=0.0)
    assert len(model.calculate_loss(_batch_with_creative(train, model.device))) == 3


def test_shared_projector_learns_from_the_profile_task(tiny_creative_data):
    model, train, _, _ = build(tiny_creative_data, share_user_conditioner=True, **_only("recon"))
    assert model.user_to_profile is model.user_to_creative
    model.calculate_loss(_batch_with_creative(train, model.device))[0].backward()
    assert all(p.grad.abs().sum() > 0 for p in model.user_to_creative.parameters())  # the title prompt's map moved


def test_ablation_without_user_embedding(tiny_creative_data):
    model, train, _, _ = build(tiny_creative_data, use_user_embedding=False, **_only("creative"))
    model.calculate_loss(_batch_with_creative(train, model.device))[0].backward()
    assert all(p.grad is None for p in model.user_to_creative.parameters())  # U never reaches the creative LLM
    assert model.user_token.grad is None


def test_profile_text_is_written_at_the_user_slot(tiny_creative_data):
    """creative_user_text: profile (the profile-prompt baseline) writes each row's text
    profile as words at {user}, in training and in generation, and refuses a prompt
    without them (clustered inference has no words for a centroid)."""
    model, train, _, _ = build(tiny_creative_data, use_user_embedding=False, creative_user_text="profile",
                               **_only("creative"))
    batch = _batch_with_creative(train, model.device)
    rows = [r for r in batch[CREATIVE_INDEX].tolist() if r >= 0]
    seen = []
    loss = model.creative.token_loss
    model.creative.token_loss = lambda before, *a, **kw: seen.append(before) or loss(before, *a, **kw)
    model.calculate_loss(batch)[0].backward()
    decode = model.creative.tokenizer.decode
    prompts = [decode(ids) for ids in seen[0].tolist()]
    assert len(prompts) == len(rows)
    assert all(p.endswith(model.creative_profiles[r]) for p, r in zip(prompts, rows))
    assert all(p.grad is None for p in model.user_to_creative.parameters())  # words only: U is not read
    with pytest.raises(ValueError, match="creative_user_text = 'profile'"):
        model.generate_from_user_vectors(torch.randn(1, model.user_encoder.hidden_size, device=model.device), [1])
    # generation batches rows by prompt length: each row must keep its own words
    longer, shorter = next((a, b) for a in range(1, 20) for b in range(1, 20)
                           if model.prompt_length_order([a, b]) == [1, 0])
    seen_rows = []
    generate = model.generate_from_user_vectors
    model.generate_from_user_vectors = lambda u, items, user_texts=None, **kw: (
        seen_rows.extend(zip(items, user_texts)) or generate(u, items, user_texts=user_texts, **kw))
    seq, seq_len = batch[model.ITEM_SEQ][:2], batch[model.ITEM_SEQ_LEN][:2]
    titles, _ = model.generate_titles(seq, seq_len, torch.tensor([longer, shorter], device=model.device),
                                      user_texts=["likes drama films", "likes comedy films"], max_new_tokens=3)
    assert len(titles) == 2 and all(isinstance(t, str) for t in titles)
    assert seen_rows == [(shorter, "likes comedy films"), (longer, "likes drama films")]


def test_soft_token_lands_where_the_template_says(tiny_creative_data):
    model, train, _, _ = build(tiny_creative_data, user_injection="soft_token")
    seen = {}
    decoder = model.creative._base()[0]
    handle = decoder.register_forward_pre_hook(lambda m, a, kw: seen.update(kw), with_kwargs=True)
    user_vec = torch.randn(2, model.user_encoder.hidden_size, device=model.device)
    before, after = model._prompt_parts(model.template, [1, 2])
    model.creative.loss(before, model.user_to_creative(user_vec), after, model.creative.target_ids(["a b", "c"]))
    handle.remove()
    projected = model.user_to_creative(user_vec).soft_tokens
    for row in range(2):
        assert torch.allclose(seen["inputs_embeds"][row, len(before[row])], projected[row].to(seen["inputs_embeds"].dtype))
    prefix = model.template.text.split("{user}")[0]
    assert model.creative.tokenizer.decode(before[0]) == model.creative.tokenizer.decode(
        model.creative.token_ids([prefix])[0])


def test_a_training_step_tokenizes_nothing(tiny_creative_data, monkeypatch):
    """Prompts, titles and profiles are tokenized when the model is built; the step only
    gathers rows of token tensors (every loss on, reconstruction included). The profiles'
    embedding table (align loss) is built by the item LLM on first use, before the step here."""
    from transformers import PreTrainedTokenizerBase

    model, train, _, _ = build(tiny_creative_data, recon_loss_weight=1.0)
    model._profile_vectors()
    calls = []
    original = PreTrainedTokenizerBase.__call__
    monkeypatch.setattr(PreTrainedTokenizerBase, "__call__",
                        lambda tok, *a, **kw: calls.append(a) or original(tok, *a, **kw))
    losses = model.calculate_loss(_batch_with_creative(train, model.device))
    assert len(losses) == len(model.active_losses) and "recon" in model.active_losses
    sum(losses).backward()
    assert calls == []


@pytest.mark.parametrize("left_pad", [False, True])
def test_rows_assembled_from_token_tensors_match_row_by_row_assembly(tiny_creative_data, left_pad):
    """The training step's batch (prompt parts, soft token, target) is assembled with tensor
    ops from token tables; it must equal assembling each row on its own and padding it."""
    model, _, _, _ = build(tiny_creative_data, user_injection="soft_token")
    creative = model.creative
    before = [[5, 6, 7], [8], []]
    after = [[9, 10], [11, 12, 13, 14], [15]]
    targets = [[16], [17, 18], [19, 20, 21]]
    soft = torch.randn(3, creative.hidden_size, device=model.device)
    embeds, mask, labels = creative._embed_rows(before, soft, after, targets, left_pad=left_pad)
    embed = creative.llm.get_input_embeddings()
    width = max(len(b) + 1 + len(a) + len(t) for b, a, t in zip(before, after, targets))
    assert embeds.shape[:2] == mask.shape == labels.shape == (3, width)
    for row in range(3):
        ids = lambda part: torch.tensor(part, dtype=torch.long, device=model.device)  # noqa: E731
        expected = torch.cat([embed(ids(before[row])), soft[row : row + 1].to(embed.weight.dtype),
                              embed(ids(after[row] + targets[row]))]).to(embeds.dtype)
        n = len(expected)
        span = slice(width - n, width) if left_pad else slice(0, n)
        assert torch.equal(embeds[row, span], expected)
        assert not embeds[row][mask[row] == 0].any()  # padding is zeros
        assert mask[row].sum() == n and mask[row, span].all()
        assert labels[row, span].tolist() == [-100] * (n - len(targets[row])) + targets[row]
        assert (labels[row][mask[row] == 0] == -100).all()


def test_weighted_title_loss(tiny_creative_data):
    """Unit weights give the plain mean; weight on one token only gives that token's loss."""
    model, _, _, _ = build(tiny_creative_data)
    creative = model.creative
    before, after = model._prompt_parts(model.template, [1, 2])
    condition = model.user_to_creative(torch.randn(2, model.user_encoder.hidden_size, device=model.device))
    targets = creative.target_ids(["a b", "c"])
    plain = creative.loss(before, condition, after, targets)
    ones = [[1.0] * len(t) for t in targets]
    assert torch.allclose(creative.loss(before, condition, after, targets, ones), plain)
    first_row_only = [[1.0] * len(targets[0]), [0.0] * len(targets[1])]
    row0 = creative.loss(before[:1], condition.rows(slice(0, 1)), after[:1], targets[:1])
    assert torch.allclose(creative.loss(before, condition, after, targets, first_row_only), row0, atol=1e-5)


@pytest.mark.exact_numerics
def test_generation_from_embeddings_matches_generation_from_tokens(tiny_creative_data):
    model, _, _, _ = build(tiny_creative_data)
    creative = model.creative
    ids = creative.token_ids(["hello there story", "a"])
    texts, _ = creative.generate(ids, None, [[], []], max_new_tokens=5)
    for row, prompt in enumerate(ids):
        out = creative.llm.generate(input_ids=torch.tensor([prompt], device=model.device), max_new_tokens=5,
                                    do_sample=False, pad_token_id=creative.tokenizer.pad_token_id,
                                    eos_token_id=creative.eos_id)
        expected = clean_generation(creative.tokenizer.decode(out[0, len(prompt):], skip_special_tokens=True))
        assert texts[row] == expected


def test_generation_is_deterministic_and_respects_context(tiny_creative_data):
    model, _, _, test = build(tiny_creative_data)
    feat = test.dataset.inter_feat
    args = (feat["item_id_list"][:4].to(model.device), feat["item_length"][:4].to(model.device),
            feat["item_id"][:4].to(model.device))
    assert model.generate_titles(*args) == model.generate_titles(*args)
    model.creative.max_context = 12  # prompt + new tokens past the context: clear error
    with pytest.raises(ValueError, match=r"is 2[0-9] tokens, more than the creative LLM's context \(12\)"):
        model.generate_titles(*args)


def test_template_needs_the_user_slot():
    with pytest.raises(TemplateError, match=r"must contain the user slot \{user\} exactly once"):
        PromptTemplate("Ad: {title}\nTitle:", "creative_prompt")
    assert PromptTemplate("U {user} A {title}", "p").split(title="T") == ("U ", " A T")


def test_creative_rows_follow_recbole_split(tiny_creative_data):
    _, train, valid, test = build(tiny_creative_data)
    creative = train.dataset.creative
    splits = {name: {int(i) for i in d.dataset.inter_feat[CREATIVE_INDEX] if i >= 0}
              for name, d in (("train", train), ("valid", valid), ("test", test))}
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["valid"])
    test_feat = test.dataset.inter_feat
    for row in range(len(test_feat)):
        index = int(test_feat[CREATIVE_INDEX][row])
        if index >= 0:  # a test row's creative target is that row's own (user, ad)
            assert creative.users[index] == int(test_feat["user_id"][row])
            assert creative.items[index] == int(test_feat["item_id"][row])
    assert len(splits["test"]) == len(test_feat)  # every user's last click has a title


def test_creative_reader_reports_and_drops_bad_rows(tiny_creative_data, caplog):
    _, train, _, _ = build(tiny_creative_data)
    dataset = train.dataset
    path = tiny_creative_data / "bad.creative"
    path.write_text("user_id:token\titem_id:token\ttitle:token_seq\n"
                    "u1\t101\tfine title\nghost\t101\tx\nu1\t999\ty\nu2\t102\t \n")
    table = read_creative_file(str(path), dataset)
    assert len(table) == 1 and table.dropped == {"unknown_user_or_item": 2, "empty_title": 1}
    assert "ghost/101" in caplog.text
    path.write_text("user_id:token\titem_id:token\ttitle:token_seq\nu1\t101\n")
    with pytest.raises(CreativeFileError, match=r"bad.creative:2: 2 fields, header has 3"):
        read_creative_file(str(path), dataset)
    path.write_text("user_id:token\titem_id:token\n")
    with pytest.raises(CreativeFileError, match="lacks the column 'title'"):
        read_creative_file(str(path), dataset)


def test_missing_creative_file_says_where_and_how(tiny_data):
    with pytest.raises(FileNotFoundError, match=r"tiny\.creative does not exist.*ads-synth"):
        build(tiny_data)


def test_tokenizer_without_pad_token_is_handled(tmp_path):
    from transformers import AutoTokenizer

    from recbole_hllm.backbones.backbone import BackboneSpec, load_tokenizer
    from recbole_hllm.backbones.embedded import embedded_model_dir

    source = embedded_model_dir("minilm")
    tok = AutoTokenizer.from_pretrained(source)
    tok.pad_token = None
    tok.save_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "config.json").write_text((source / "config.json").read_text())
    loaded = load_tokenizer(BackboneSpec(role="creative", source=str(tmp_path / "tok")))
    assert loaded.pad_token is not None


def test_checkpoint_round_trip_and_generate_cli(tiny_creative_data, tmp_path):
    metrics = ["rouge-l", "bleu", "pc_avg", "pc_max_tok", "fact_support", "distinct-2", "self_bleu"]
    config = tiny_creator_config(tiny_creative_data, generation_metrics=metrics, generate_on_valid=True,
                                 valid_metric="pc_avg")
    result = run_recbole(model="HLLMCreator", dataset="tiny", config_dict=config)
    assert {"ndcg@10", *metrics, *(f"original_{m}" for m in metrics)} <= set(result["test_result"])
    assert "pc_avg" in result["best_valid_result"]  # a generation metric chose the epoch
    checkpoint = next((tiny_creative_data / "saved").glob("HLLMCreator-*.pth"))
    titles = [json.loads(line) for line in open(str(checkpoint).replace(".pth", "-titles.jsonl"))]
    assert len(titles) == 24 and {"user", "item", "original", "reference", "generated"} <= set(titles[0])
    config, model, _, _, _, test = load_data_and_model(str(checkpoint))
    feat = test.dataset.inter_feat
    args = (feat["item_id_list"][:3].to(model.device), feat["item_length"][:3].to(model.device),
            feat["item_id"][:3].to(model.device))
    by_user = {t["user"]: t["generated"] for t in titles}
    generated, _ = model.eval().generate_titles(*args)
    users = test.dataset.id2token("user_id", feat["user_id"][:3].numpy())
    assert generated == [by_user[str(u)] for u in users]  # the reloaded model writes the same titles
    # two worker processes (gloo), one user per batch: each rank writes some, rank 0 the whole table
    out = subprocess.run([sys.executable, "-m", "recbole_hllm.cli.generate", "--checkpoint", str(checkpoint),
                          "--users", ",".join(map(str, users)), "--out", str(tmp_path / "g.jsonl"),
                          "--nproc", "2", "--batch-size", "1"],
                         capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(tmp_path), timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in open(tmp_path / "g.jsonl")]
    assert [r["generated"] for r in rows] == [by_user[str(u)] for u in users]
    assert not list(tmp_path.glob("g.jsonl.parts*"))  # every rank's parts file is removed at the end
    bad = subprocess.run([sys.executable, "-m", "recbole_hllm.cli.generate", "--checkpoint", str(checkpoint),
                          "--users", "nobody"], capture_output=True, text=True, cwd=tmp_path,
                         env=subprocess_env(tmp_path), timeout=240)
    assert bad.returncode == 2 and "unknown user_id values: nobody" in bad.stderr


def test_console_script_trains_hllm_creator(tiny_creative_data, tmp_path):
    cfg = tmp_path / "creator.yaml"
    cfg.write_text(yaml.safe_dump(tiny_creator_config(tiny_creative_data, state="INFO")))
    script = console_script("run_recbole")
    out = subprocess.run([script, "--model=HLLMCreator", "--dataset=tiny", f"--config_files={cfg}"],
                         capture_output=True, text=True, cwd=tmp_path, env=subprocess_env(tmp_path), timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    log = out.stdout + out.stderr
    assert "rouge-l" in log and "generated 24 titles" in log


def test_learning_rate_groups(tiny_creative_data):
    from recbole_hllm.trainer import HLLMCreatorTrainer

    config = Config(model="HLLMCreator", dataset="tiny",
                    config_dict=tiny_creator_config(tiny_creative_data, creative_learning_rate=0.01, learning_rate=0.001,
                                                    projector_learning_rate=0.05))
    init_seed(config["seed"], True)
    train, _, _ = data_preparation(config, create_dataset(config))
    model = HLLMCreator(config, train._dataset)
    optimizer = HLLMCreatorTrainer(config, model).optimizer
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    expected = {"creative.": 0.01, "user_to_creative.": 0.05, "user_to_profile.": 0.05, "": 0.001}
    for name, param in model.named_parameters():
        if param.requires_grad:
            prefix = next(p for p in expected if name.startswith(p))
            assert lrs[id(param)] == expected[prefix], name


def test_soft_token_projector_starts_at_token_norm_whatever_the_scale_of_u():
    from recbole_hllm.model.heads import SoftTokenProjector

    torch.manual_seed(0)
    projector = SoftTokenProjector(user_size=64, creative_size=96, token_norm=3.0)
    user_vecs = torch.randn(256, 64)
    norms = projector(user_vecs).norm(dim=-1)
    assert 2.5 < norms.mean() < 3.5
    assert torch.allclose(projector(user_vecs * 40), projector(user_vecs), atol=1e-5)  # scale-free in U


def _checkpointing_on(llm) -> bool:
    """transformers >= 5.25 names it is_activation_checkpointing, older ones is_gradient_checkpointing."""
    on = getattr(llm, "is_activation_checkpointing", None)
    return llm.is_gradient_checkpointing if on is None else on


@pytest.mark.parametrize("mode", ["prefix", "soft_token", "both"])
def test_gradient_checkpointing_changes_memory_not_results(tiny_creative_data, mode):
    """With the prefix this also checks that checkpointed layers keep the prefix cache
    (transformers drops a cache under checkpointing unless told it only reads)."""
    grads = []
    for checkpointing in (0, 1):
        model, train, _, _ = build(tiny_creative_data, creative_llm_activation_checkpointing=checkpointing,
                                   user_injection=mode, **_only("creative"))
        model.train()
        assert _checkpointing_on(model.creative.llm) == bool(checkpointing)
        loss = model.calculate_loss(_batch_with_creative(train, model.device))[0]
        loss.backward()
        grads.append((loss.detach(), model.user_token.grad.clone()))
    assert torch.allclose(grads[0][0], grads[1][0]) and torch.allclose(grads[0][1], grads[1][1], atol=1e-6)


def test_shared_prompt_prefix_gives_the_same_titles(tiny_creative_data):
    """Encoding the template's fixed start once per batch (KV cache shared by the rows)
    must not change what is generated."""
    model, _, _, test = build(tiny_creative_data, generation_max_new_tokens=8, user_injection="soft_token")
    model.eval()
    feat = test.dataset.inter_feat
    args = (feat["item_id_list"][:10], feat["item_length"][:10], feat["item_id"][:10])
    calls = []
    original = model.creative._shared_prompt_cache
    model.creative._shared_prompt_cache = lambda *a: calls.append(a) or original(*a)
    shared, _ = model.generate_titles(*args)
    model.creative.share_prefix = False
    unshared, _ = model.generate_titles(*args)
    assert calls and shared == unshared


def test_user_prompt_words_are_read_between_history_and_user_token(tiny_creative_data):
    """``user_prompt``: the user LLM keeps its word table (HLLM drops it) and reads the
    prompt's tokens after the history; U then depends on them."""
    model, train, _, _ = build(tiny_creative_data, user_prompt="The user next wants")
    plain, _, _, _ = build(tiny_creative_data)
    assert len(model.user_prompt_ids) > 0 and len(plain.user_prompt_ids) == 0
    vocabulary = model.user_encoder.llm.get_input_embeddings().weight
    assert len(vocabulary) > 1 and len(plain.user_encoder.llm.get_input_embeddings().weight) == 1
    batch = _batch_with_creative(train, model.device)
    sum(model.calculate_loss(batch)).backward()
    seq, seq_len = batch[model.ITEM_SEQ][:2], batch[model.ITEM_SEQ_LEN][:2]
    with_words = model.user_embedding(seq, seq_len)
    model.user_prompt_ids = model.user_prompt_ids[:0]
    assert not torch.allclose(with_words, model.user_embedding(seq, seq_len))


def test_eager_attention_computes_what_sdpa_computes(tiny_creative_data):
    """creative_llm_attention: eager (faster on CPUs) is the same model: in float32 the title
    loss and the greedy titles (user prefix, left padding) agree with sdpa."""
    results = {}
    for kernel in ("sdpa", "eager"):
        model, train, _, test = build(tiny_creative_data, creative_llm_attention=kernel, **_only("creative"))
        base = model.creative.llm.get_base_model() if hasattr(model.creative.llm, "get_base_model") else model.creative.llm
        assert base.config._attn_implementation == kernel
        model.eval()
        with torch.no_grad():
            loss = model.calculate_loss(_batch_with_creative(train, model.device))[0]
        feat = test.dataset.inter_feat
        titles = model.generate_titles(feat["item_id_list"][:4].to(model.device), feat["item_length"][:4].to(model.device),
                                       feat["item_id"][:4].to(model.device))
        results[kernel] = (float(loss), titles)
    assert results["eager"][0] == pytest.approx(results["sdpa"][0], rel=1e-4)
    assert results["eager"][1] == results["sdpa"][1]


def test_unknown_attention_kernel_is_named(tiny_creative_data):
    with pytest.raises(ValueError, match=r"creative_llm_attention = 'flash' \(expected 'sdpa' or 'eager'"):
        build(tiny_creative_data, creative_llm_attention="flash")
