"""``run_hyper``: RecBole's hyper-parameter tuning (its ``run_hyper.py``) with the plugin loaded.

    run_hyper --model=HLLM --dataset=ml-100k --params_file=hllm.hyper [--config_files=a.yaml]
              [--algo exhaustive|random|bayes] [--max_evals N] [--tool hyperopt|ray] [--key=value ...]

The search space file is RecBole's (one parameter a line: ``learning_rate choice [1e-4,5e-4]``,
``loguniform``, ``uniform``, ``quniform``). Each trial trains and evaluates one model
through RecBole's own ``HyperTuning`` and ``objective_function``; the tuning target is
the model's ``valid_metric``, which for HLLMCreator may be a generation metric
(``--valid_metric=interest_hit --generate_on_valid=True``). The best parameters and
their results are printed and written to ``--output_file``.

``--tool hyperopt`` (default) needs only hyperopt (``pip install recbole_hllm[tune]``);
ray is used only with ``--tool ray``. The RecBole fixes this relies on live in
:mod:`recbole_hllm.integration.compat` (hyperopt's exhaustive search on numpy 2; RecBole's
objective reporting to ray when ray is absent).
"""
from __future__ import annotations

import argparse
import sys

from recbole_hllm.cli.common import (add_debug_flag, add_model_and_dataset, config_file_list, default_dataset,
                                     parse_recbole_style, run_console)
from recbole_hllm.errors import UserError

ALGOS = ("exhaustive", "random", "bayes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_hyper", description=__doc__.split("\n")[0],
                                     epilog="Any other --key=value is a fixed RecBole config value for every trial.")
    add_model_and_dataset(parser, config_files_help="space-separated yaml files, fixed for every trial")
    parser.add_argument("--params_file", required=True, help="RecBole search-space file")
    parser.add_argument("--output_file", default="hyper.result", help="where the trials' results are written")
    parser.add_argument("--display_file", default=None, help="an HTML plot of the trials (needs plotly)")
    parser.add_argument("--tool", choices=("hyperopt", "ray"), default="hyperopt", type=str.lower)
    parser.add_argument("--algo", choices=ALGOS, default="exhaustive",
                        help="hyperopt search: every combination, random, or TPE (bayes)")
    parser.add_argument("--max_evals", type=int, default=100, help="trials at most (random/bayes)")
    parser.add_argument("--early_stop", type=int, default=10, help="stop after this many trials without gain")
    add_debug_flag(parser)
    return parser


def tune_with_hyperopt(args, fixed: dict, config_files: list[str] | None):
    """RecBole's ``HyperTuning`` over ``objective_function``; returns the HyperTuning object."""
    try:
        import hyperopt  # noqa: F401
    except ImportError:
        raise UserError("run_hyper --tool hyperopt needs hyperopt: pip install 'recbole_hllm[tune]'") from None
    from recbole.quick_start import objective_function
    from recbole.trainer import HyperTuning

    def objective(config_dict, config_file_list):
        return objective_function({**fixed, **(config_dict or {})}, config_file_list)

    tuner = HyperTuning(objective, algo=args.algo, early_stop=args.early_stop, max_evals=args.max_evals,
                        params_file=args.params_file, fixed_config_file_list=config_files,
                        display_file=args.display_file)
    tuner.run()
    tuner.export_result(output_file=args.output_file)
    return tuner


def tune_with_ray(args, fixed: dict, config_files: list[str] | None) -> None:
    """RecBole 1.2.1's ray flow (``tune.run`` over ``objective_function``, ``--max_evals``
    samples of the space, ranked by ``valid_metric``). Not exercised by the tests: ray
    does not import on the machines they run on."""
    try:
        import ray
        from ray import tune
    except Exception as exc:  # ray fails in several ways when its dependencies are broken
        raise UserError(f"run_hyper --tool ray needs a working ray ({type(exc).__name__}: {exc}); "
                        "use --tool hyperopt, which needs no ray") from None
    import os

    from recbole.quick_start import objective_function

    space = {}
    for name, kind, value in _space_lines(args.params_file):
        if kind == "choice":
            space[name] = tune.choice(eval(value))  # RecBole's own file format: a Python list
        elif kind in ("uniform", "loguniform"):
            low, high = (float(v) for v in value.split(","))
            space[name] = getattr(tune, kind)(low, high)
        else:
            raise UserError(f"{args.params_file}: --tool ray reads choice, uniform and loguniform, not {kind!r}")
    files = [os.path.abspath(f) for f in config_files] if config_files else None

    def trial(config):
        return objective_function({**fixed, **config}, files)

    ray.init()
    analysis = tune.run(trial, config=space, num_samples=args.max_evals, log_to_file=args.output_file)
    metric = fixed.get("valid_metric", "ndcg@10")
    best = analysis.get_best_trial(metric, "max", "last")
    print("best params:", best.config)
    print("best result:", best.last_result)


def _space_lines(path: str):
    """(name, kind, value) for each line of a RecBole search-space file."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(" ")
            if len(parts) >= 3:
                yield parts[0], parts[1], "".join(parts[2:])


def main(argv: list[str] | None = None) -> int:
    args = parse_recbole_style(build_parser(), argv)
    return run_console("run_hyper", lambda: _tune(args), debug=args.debug)


def _tune(args) -> int:
    import os

    import recbole_hllm  # noqa: F401  (compatibility fixes + registration)
    from recbole_hllm.errors import UserFileNotFoundError

    if not os.path.isfile(args.params_file):
        raise UserFileNotFoundError(f"--params_file {args.params_file}: no such file (one parameter a line, "
                                    "e.g. `learning_rate choice [0.001,0.0001]`)")

    fixed = {"model": args.model, "dataset": args.dataset or default_dataset(args.model)}
    config_files = config_file_list(args)
    if args.tool == "ray":
        tune_with_ray(args, fixed, config_files)
        return 0
    tuner = tune_with_hyperopt(args, fixed, config_files)
    best = tuner.params2result[tuner.params2str(tuner.best_params)]
    print("best params:", tuner.best_params)
    print("best valid score:", best["best_valid_score"])
    print("best result:", dict(best["test_result"]))
    print("all trials:", args.output_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
