"""Shared fixtures: a tiny RecBole atomic dataset and tiny random LLM configs.

Nothing here touches the network: models are randomly initialised from small
configs and use the embedded MiniLM tokenizer (a 0.3 s local load).
"""
from __future__ import annotations

import os
import subprocess
import sys
import random
from pathlib import Path

import pytest

import recbole_hllm  # noqa: F401  (fixes + registration before any RecBole use)

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: one core per worker, not two threads each
    torch.set_num_threads(1)

# The device every test runs on: RECBOLE_HLLM_TEST_DEVICE=cuda (or `pytest --device cuda`) runs
# the suite on a GPU; the default is the CPU even where a GPU is visible, so results do not
# depend on the machine. RECBOLE_HLLM_TEST_PRECISION=auto lets the backbones compute in their
# device's default precision (bf16 on CUDA); the default float32 keeps exact comparisons
# exact, and tests marked ``exact_numerics`` are skipped under auto.
TEST_DEVICE = os.environ.get("RECBOLE_HLLM_TEST_DEVICE", "cpu")
TEST_PRECISION = os.environ.get("RECBOLE_HLLM_TEST_PRECISION", "float32")


def pytest_addoption(parser):
    parser.addoption("--device", default=None, choices=["cpu", "cuda"],
                     help="run every test on this device (default: RECBOLE_HLLM_TEST_DEVICE, else cpu)")


def pytest_configure(config):
    global TEST_DEVICE
    TEST_DEVICE = config.getoption("--device") or TEST_DEVICE
    os.environ["RECBOLE_HLLM_TEST_DEVICE"] = TEST_DEVICE  # xdist workers and subprocesses see the same
    if TEST_DEVICE == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda / RECBOLE_HLLM_TEST_DEVICE=cuda: no CUDA device is visible")
    if TEST_DEVICE == "cpu":  # RecBole picks CUDA whenever it is available: hide it from every config
        torch.cuda.is_available = lambda: False
    config.addinivalue_line("markers", "exact_numerics: compares numbers exactly (skipped unless float32)")


def pytest_collection_modifyitems(config, items):
    if TEST_PRECISION != "float32":
        skip = pytest.mark.skip(reason="exact comparison; RECBOLE_HLLM_TEST_PRECISION is not float32")
        for item in items:
            if "exact_numerics" in item.keywords:
                item.add_marker(skip)


def console_script(name: str) -> str:
    """An installed console script, found as a user's shell would: this interpreter's own
    bin folder first (a venv that is not activated), then PATH."""
    import shutil

    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"console script {name!r} is neither next to {sys.executable} nor on PATH: install the package")
    return found


def device_settings() -> dict:
    """Config keys that put a model on the test device, in the test precision."""
    settings = {"use_gpu": TEST_DEVICE == "cuda"}
    if TEST_PRECISION == "float32":
        settings.update(item_llm_dtype="float32", user_llm_dtype="float32")
    return settings


def build_model(model_class, config_dict: dict, dataset: str = "tiny"):
    """Config, data splits and a seeded model, as RecBole's quick start builds them:
    ``(model, train, valid, test)``."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    config = Config(model=model_class.__name__, dataset=dataset, config_dict=config_dict)
    init_seed(config["seed"], True)
    train, valid, test = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], True)
    return model_class(config, train._dataset).to(config["device"]), train, valid, test


GENRES = ["drama", "comedy", "action", "horror", "romance", "documentary"]
TINY_LLAMA = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}


def write_tiny_dataset(root: Path, name: str = "tiny", n_users: int = 24, n_items: int = 40,
                       seed: int = 0, empty_text_items=(), creative: bool = False) -> Path:
    """Write ``root/name/name.{inter,item}``; users prefer one genre (so there is signal).

    With ``creative``, also ``name.creative``: for each user's last 3 clicks a title
    that names the user's favourite genre, plus a profile.
    """
    rng = random.Random(seed)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    items = list(range(101, 101 + n_items))  # raw ids differ from RecBole's internal ids
    genre = {item: GENRES[i % len(GENRES)] for i, item in enumerate(items)}
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    creative_rows = ["user_id:token\titem_id:token\ttitle:token_seq\tprofile:token_seq"]
    for user in range(1, n_users + 1):
        favourite = GENRES[user % len(GENRES)]
        liked = [i for i in items if genre[i] == favourite]
        length = rng.randint(6, 14)
        history = [rng.choice(liked) if rng.random() < 0.8 else rng.choice(items) for _ in range(length)]
        for t, item in enumerate(history):
            lines.append(f"u{user}\t{item}\t{1000 * user + t}")
        for item in dict.fromkeys(history[-3:]):
            creative_rows.append(f"u{user}\t{item}\t{favourite} fans love story {item}\tlikes {favourite} films")
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    rows = ["item_id:token\ttitle:token_seq\tgenre:token\tdescription:token_seq"]
    for item in reversed(items):  # file order differs from id order on purpose
        title = "" if item in empty_text_items else f"{genre[item]} story number {item}"
        description = "" if item in empty_text_items else f"a {genre[item]} film"
        rows.append(f"{item}\t{title}\t{'' if item in empty_text_items else genre[item]}\t{description}")
    (folder / f"{name}.item").write_text("\n".join(rows) + "\n")
    if creative:
        (folder / f"{name}.creative").write_text("\n".join(creative_rows) + "\n")
    return folder


def tiny_config(data_root: Path, **overrides) -> dict:
    """A config dict that trains HLLM on the tiny dataset in seconds."""
    config = {
        "data_path": str(data_root),
        "text_fields": ["title", "genre"],
        "item_llm": "random",
        "item_llm_config": dict(TINY_LLAMA),
        "item_llm_tokenizer": "minilm",
        "item_llm_tuning": "frozen",
        "item_pooling": "item_token",
        "user_llm": "random",
        "user_llm_config": dict(TINY_LLAMA, hidden_size=48, intermediate_size=96),
        "user_llm_tokenizer": "minilm",
        "user_llm_layers": None,
        "num_negatives": 16,
        "epochs": 2,
        "train_batch_size": 8,
        "eval_batch_size": 16,
        "MAX_ITEM_LIST_LENGTH": 5,
        "show_progress": False,
        "state": "ERROR",
        "checkpoint_dir": str(data_root / "saved"),
        "item_embedding_cache": True,
        "seed": 2020,
        "reproducibility": True,
        **device_settings(),
    }
    config.update(overrides)
    return config


@pytest.fixture(autouse=True)
def isolated_cwd(tmp_path, monkeypatch):
    """RecBole writes log/ and saved/ under the working directory: keep them in tmp."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECBOLE_HLLM_CACHE", str(tmp_path / "cache"))
    yield


def tiny_creator_config(data_root: Path, **overrides) -> dict:
    """HLLMCreator on the tiny dataset with a tiny random creative LLM."""
    config = tiny_config(
        data_root,
        creative_llm="random",
        creative_llm_config=dict(TINY_LLAMA, max_position_embeddings=256),
        creative_llm_tokenizer="minilm",
        creative_llm_layers=None,
        creative_llm_tuning="full",
        text_fields=["title", "description"],
        generation_max_new_tokens=6,
        generation_batch_size=8,
        generation_dtype="float32",  # exact: greedy titles are compared with teacher-forced argmaxes
        **({"creative_llm_dtype": "float32"} if TEST_PRECISION == "float32" else {}),
        match_hidden_size=16,
        user_prefix_hidden_size=16,
        epochs=1,
        user_warmup_epochs=0,
    )
    config.update(overrides)
    return config


@pytest.fixture
def tiny_creative_data(tmp_path) -> Path:
    write_tiny_dataset(tmp_path / "data", creative=True)
    return tmp_path / "data"


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    write_tiny_dataset(tmp_path / "data")
    return tmp_path / "data"


def subprocess_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["RECBOLE_HLLM_CACHE"] = str(tmp_path / "cache")
    env.setdefault("OMP_NUM_THREADS", "1")
    if TEST_DEVICE == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU test's subprocess stays on the CPU too
    return env


def save_tiny_chat_model(folder: Path) -> Path:
    """A randomly initialised 2-layer Llama with the MiniLM tokenizer, saved as a Hugging
    Face model directory (what the local chat backend loads)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from recbole_hllm.backbones.embedded import embedded_model_dir

    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir("minilm"))
    config = dict(TINY_LLAMA, max_position_embeddings=2048)  # chat prompts are long
    config.pop("model_type")
    import torch

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", vocab_size=len(tokenizer), **config))
    model.generation_config.eos_token_id = tokenizer.sep_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``python -c code`` in a fresh interpreter with :func:`subprocess_env`."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=subprocess_env(tmp_path), timeout=120)
