"""The console scripts, one module per command: its flags, its ``main`` and what only it needs.

* ``run_recbole`` (also ``python -m recbole_hllm``): :mod:`.run_recbole`, RecBole's
  run_recbole with the plugin loaded;
* ``run_hyper``: :mod:`.run_hyper`, RecBole's hyper-parameter tuning;
* ``hllm-generate``: :mod:`.generate`, titles from a checkpoint (:mod:`recbole_hllm.inference`);
* ``hllm-build-creatives``: :mod:`.build_creatives`, training titles (:mod:`recbole_hllm.construction`);
* ``hllm-eval``: :mod:`.evaluate`, scores and a pairwise judge (:mod:`recbole_hllm.evaluation`);
* ``hllm-serve``: :mod:`.serve`, a chat server (:mod:`recbole_hllm.chat`).

:mod:`.common`: each model's default dataset, the flags several commands share, and how
every command ends (a known error as one line, a bug with its traceback).
"""
from recbole_hllm import old_paths


def __getattr__(name):  # this was run_recbole's module: its names moved (old_paths.MOVED_NAMES)
    return old_paths.moved_name(__name__, name)
