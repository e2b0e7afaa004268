"""Multi-process runs on the CPU (gloo, 2 processes): RecBole's engine with the plugin's models.

Workers are module-level functions (torch's spawn pickles them by name).
"""
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from recbole_hllm.integration.launch import DistributedRunError, spawn

from conftest import build_model, tiny_config, tiny_creator_config, write_tiny_dataset

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed missing")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join(local_rank, world, port):
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=local_rank,
                                         world_size=world)
    torch.set_num_threads(1)


# -- collectives: every rank's share of the loss gives the global batch's gradient ------------------
def _average_grads(params):
    for p in params:
        torch.distributed.all_reduce(p.grad)
        p.grad /= torch.distributed.get_world_size()  # what DDP does


def _losses_worker(local_rank, world, port, data_root):
    _join(local_rank, world, port)
    from recbole_hllm.model.losses import matching_loss, sampled_infonce, symmetric_infonce

    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(7, 6, generator=gen)  # 7 rows: the ranks hold 4 and 3
    others = torch.randn(7, 6, generator=gen)
    neg_ids = torch.arange(10, 18)
    negatives = torch.randn(8, 6, generator=gen)  # 4 sampled per rank, shared by all
    weight = torch.nn.Parameter(torch.eye(6) + 0.1 * torch.randn(6, 6, generator=gen))
    mine = slice(0, 4) if local_rank == 0 else slice(4, 7)
    my_negs = slice(0, 4) if local_rank == 0 else slice(4, 8)
    scale = torch.tensor(5.0)

    from recbole_hllm.distributed.context import gather_no_grad, gather_with_grad, global_means

    for name in ("infonce", "symmetric", "match"):
        weight.grad = None
        a, b = rows[mine] @ weight, others[mine] @ weight
        if name == "infonce":  # as HLLM.next_item_infonce: every rank's negatives, gathered with gradients
            negs, _ = gather_with_grad(negatives[my_negs] @ weight)
            loss = sampled_infonce(a, b, torch.arange(len(a)), negs, gather_no_grad(neg_ids[my_negs]), scale, 0.99)
        elif name == "symmetric":  # as HLLMCreator's align loss: every rank's rows, gathered with gradients
            (all_a, offset), (all_b, _) = gather_with_grad(a), gather_with_grad(b)
            loss = symmetric_infonce(a, b, scale, all_a, all_b, offset)
        else:
            loss = matching_loss(a.sum(-1), b @ weight)
        global_means([loss])[0].backward()
        _average_grads([weight])
        distributed_grad = weight.grad.clone()
        # one process, the whole batch (collectives bypassed by computing the reference by hand)
        weight.grad = None
        a, b, n = rows @ weight, others @ weight, F.normalize
        if name == "infonce":
            pos = (n(a) * n(b)).sum(-1, keepdim=True) * scale
            neg = n(a) @ n(negatives @ weight).T * scale
            ref = F.cross_entropy(torch.cat([pos, neg], 1), torch.zeros(7, dtype=torch.long))
        elif name == "symmetric":
            logits = n(a) @ n(b).T * scale
            ref = (F.cross_entropy(logits, torch.arange(7)) + F.cross_entropy(logits.T, torch.arange(7))) / 2
        else:
            logits = torch.cat([a.sum(-1)[:, None], b @ weight], 1)
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1
            ref = F.binary_cross_entropy_with_logits(logits, labels)
        ref.backward()
        assert torch.allclose(distributed_grad, weight.grad, atol=1e-6), (name, distributed_grad - weight.grad)

    # the item table: each rank embeds its share once; together they make the one-process table
    import recbole_hllm  # noqa: F401
    from recbole_hllm.model.hllm import HLLM

    model, *_ = build_model(HLLM, tiny_config(Path(data_root), item_embedding_cache=False, item_embed_batch_size=4))
    table = model.item_encoder.all_items()
    counts = [None] * world
    torch.distributed.all_gather_object(counts, model.item_encoder.items_embedded)
    assert sum(counts) == table.shape[0] - 1 and min(counts) > 0, counts
    with torch.no_grad():
        one_batch = model.item_encoder._encode(torch.arange(1, table.shape[0]))
    assert torch.allclose(table[1:], one_batch, atol=1e-5)
    torch.distributed.destroy_process_group()


def test_losses_and_item_table_are_the_global_batchs(tmp_path):
    write_tiny_dataset(tmp_path / "data")
    spawn(_losses_worker, 2, (_free_port(), str(tmp_path / "data")))


def test_backend_choice():
    from recbole_hllm.integration.distributed_fixes import choose_backend

    assert choose_backend("gloo") == "gloo"
    assert choose_backend("auto") == ("nccl" if torch.cuda.is_available() else "gloo")
    with pytest.raises(ValueError, match="expected one of auto, gloo, nccl"):
        choose_backend("mpi")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="needs CUDA"):
            choose_backend("nccl")


# -- a failing rank ends the run -----------------------------------------------------------------------
def _failing_worker(local_rank, world, port):
    _join(local_rank, world, port)
    if local_rank == 1:
        raise ValueError("rank one broke on purpose")
    torch.distributed.barrier()  # would wait forever for rank 1


def test_a_failing_rank_fails_the_run_with_its_error(tmp_path):
    start = time.monotonic()
    with pytest.raises(DistributedRunError, match="(?s)rank 1 failed.*rank one broke on purpose"):
        spawn(_failing_worker, 2, (_free_port(),))
    assert time.monotonic() - start < 60


# -- RecBole's engine: training, evaluation, checkpoints ---------------------------------------------
def test_two_process_creator_run_matches_one_process(tmp_path):
    """HLLMCreator through RecBole's distributed engine: every loss, the trainer's title
    generation and the checkpoint. With the full-softmax next-item loss, no matching loss
    (its negatives are random per rank) and one batch per epoch, the 2-process global
    batch is the 1-process batch, so training is the same computation up to float
    rounding: the stated tolerance is 1e-3 on every metric."""
    from recbole.quick_start import load_data_and_model, run_recbole

    from recbole_hllm.integration.launch import run
    from recbole_hllm.trainer import HLLMCreatorTrainer

    data = write_tiny_dataset(tmp_path / "data", n_users=25, creative=True).parent  # odd: 13 + 12 users
    settings = dict(hllm_loss="full_softmax", match_loss_weight=0.0, train_batch_size=512, eval_batch_size=4,
                    epochs=3, user_warmup_epochs=1, learning_rate=0.01, item_embedding_cache=False,
                    generation_metrics=["rouge-l"])
    one = run_recbole(model="HLLMCreator", dataset="tiny", config_dict=tiny_creator_config(
        data, checkpoint_dir=str(tmp_path / "one"), **settings))
    two = run("HLLMCreator", "tiny", nproc=2, port=str(_free_port()), config_dict=tiny_creator_config(
        data, checkpoint_dir=str(tmp_path / "two"), **settings))
    # the same, with the creative LLM's decoder layers sharded by FSDP (gloo on the CPU)
    sharded = run("HLLMCreator", "tiny", nproc=2, port=str(_free_port()), config_dict=tiny_creator_config(
        data, checkpoint_dir=str(tmp_path / "fsdp"), creative_llm_fsdp=True, **settings))
    assert set(two["test_result"]) == set(one["test_result"]) == set(sharded["test_result"])
    assert {"rouge-l", "shuffled_rouge-l"} <= set(two["test_result"])
    for key, value in one["test_result"].items():
        assert two["test_result"][key] == pytest.approx(value, abs=1e-3), key
        assert sharded["test_result"][key] == pytest.approx(value, abs=1e-3), key
    [checkpoint] = list((tmp_path / "two").glob("HLLMCreator-*.pth"))
    assert not list((tmp_path / "two").glob("*.tmp"))  # written atomically, by rank 0
    titles = (tmp_path / "two" / checkpoint.name.replace(".pth", "-titles.jsonl")).read_text().splitlines()
    assert len(titles) == 25  # every test user's title, gathered from both ranks

    # the 2-process checkpoint, evaluated in one process, gives exactly the 2-process metrics
    config, model, _, _, _, test_data = load_data_and_model(str(checkpoint))
    assert config["single_spec"]
    trainer = HLLMCreatorTrainer(config, model)
    trainer.saved_model_file = str(tmp_path / "reeval.pth")
    assert dict(trainer.evaluate(test_data, load_best_model=False)) == dict(two["test_result"])
    [sharded_checkpoint] = list((tmp_path / "fsdp").glob("HLLMCreator-*.pth"))
    config, model, *_ = load_data_and_model(str(sharded_checkpoint))  # whole tensors, loadable in one process
    assert not config["creative_llm_fsdp"] and model.creative.fsdp is False


def test_checkpoint_folder_exists_before_recbole_checks_for_it(tiny_data, monkeypatch):
    """RecBole's ensure_dir tests for the folder and then creates it: ranks that start
    together race on it (FileExistsError in the loser). The trainer creates it first."""
    import recbole.trainer.trainer as recbole_trainer
    from recbole.config import Config

    from recbole_hllm.model.hllm import HLLM
    from recbole_hllm.trainer import HLLMTrainer

    folder = tiny_data / "fresh" / "saved"
    config = Config(model="HLLM", dataset="tiny", config_dict=tiny_config(tiny_data, checkpoint_dir=str(folder)))
    model, *_ = build_model(HLLM, tiny_config(tiny_data))
    seen = []
    monkeypatch.setattr(recbole_trainer, "ensure_dir", lambda path: seen.append(os.path.isdir(path)))
    HLLMTrainer(config, model)
    assert seen == [True]


def test_fsdp_needs_several_processes(tiny_creative_data):
    from recbole_hllm.model.hllm_creator import HLLMCreator

    with pytest.raises(ValueError, match="creative_llm_fsdp: True shards the creative LLM over several processes"):
        build_model(HLLMCreator, tiny_creator_config(tiny_creative_data, creative_llm_fsdp=True))
