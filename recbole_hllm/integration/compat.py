"""Fixes for RecBole 1.2.1 on today's numpy 2 / torch >= 2.6 / setuptools >= 81 / pandas 2.x.

:data:`FIXES` lists every fix: what it changes, why (the failure it prevents) and the
test that fails without it. :func:`apply_all` (from :func:`recbole_hllm.integration.install`)
applies each once. Each touches as little as possible (one RecBole module, class or
function where it can), and none changes what code outside RecBole gets, numpy's
restored aliases aside.
"""
from __future__ import annotations

import os
import sys
import types
import warnings

import numpy as np
import torch

from recbole_hllm.errors import UserError
from recbole_hllm.integration import patching
from recbole_hllm.integration.patching import Fix
from recbole_hllm.integration.registry import is_plugin_model

# alias -> what numpy 1.x meant by it. RecBole's Config sets the short ones itself, but
# a Config unpickled from a checkpoint (load_data_and_model) never runs that code, and
# RecBole's metrics then hit np.float.
_REMOVED_NUMPY_ALIASES = {
    "float_": "float64",
    "complex_": "complex128",
    "unicode_": "str_",
    "bool8": "bool_",
    "float": "float64",
    "int": "int_",
    "complex": "complex128",
    "object": "object_",
    "str": "str_",
    "unicode": "str_",
    "bool": "bool_",
    "long": "int_",
}

def restore_numpy_aliases() -> list[str]:
    """Re-create the numpy 1.x aliases removed in numpy 2 (only the missing ones)."""
    restored = []
    for alias, target in _REMOVED_NUMPY_ALIASES.items():
        if not _numpy_has(alias):
            setattr(np, alias, getattr(np, target))
            restored.append(alias)
    return restored


def _numpy_has(name: str) -> bool:
    with warnings.catch_warnings():  # numpy warns on some deprecated names it still has
        warnings.simplefilter("ignore")
        try:
            getattr(np, name)
            return True
        except AttributeError:
            return False


class _TrustedCheckpointTorch(types.ModuleType):
    """Stands for ``torch`` inside RecBole modules that load RecBole's own checkpoints.

    Only ``load`` differs: it passes ``weights_only=False`` unless the caller chose.
    Every other attribute is torch's own.
    """

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def load(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):  # a file that is not a checkpoint: one clear error
            from recbole_hllm.checkpoint import load_checkpoint

            return load_checkpoint(os.fspath(f), *args, loader=torch.load, **kwargs)
        kwargs.setdefault("weights_only", False)
        return torch.load(f, *args, **kwargs)


def relax_load_of_given_file(original):
    """Wrap a ``f(model_file)`` that calls ``torch.load(model_file)`` internally.

    RecBole's ``load_data_and_model`` does ``import torch`` inside its body, so the
    module proxy cannot reach it: ``torch.load`` is relaxed for that one file only,
    for the duration of the call; any other file loaded meanwhile keeps the default.
    """

    def load_data_and_model(model_file):
        real_load = torch.load

        def load(f, *args, **kwargs):
            if f == model_file:  # checked first: a file that is not a checkpoint is one clear error
                from recbole_hllm.checkpoint import load_checkpoint

                return load_checkpoint(f, *args, loader=real_load, **kwargs)
            return real_load(f, *args, **kwargs)

        torch.load = load
        try:
            return original(model_file)
        finally:
            torch.load = real_load

    load_data_and_model.__doc__ = original.__doc__
    return load_data_and_model


def scope_checkpoint_loading() -> None:
    """Let RecBole's trainer and ``load_data_and_model`` load the checkpoints RecBole wrote."""
    import recbole.quick_start
    import recbole.quick_start.quick_start as qs
    import recbole.trainer.trainer as trainer_module

    trainer_module.torch = _TrustedCheckpointTorch()  # resume_checkpoint, evaluate(load_best_model)
    patching.replace(qs, "load_data_and_model", relax_load_of_given_file)
    recbole.quick_start.load_data_and_model = qs.load_data_and_model


class _RayUnavailable(types.ModuleType):
    """Placeholder for ``ray.tune`` inside ``recbole.quick_start`` when ray is broken."""

    def __init__(self, reason: BaseException):
        super().__init__("ray.tune")
        self._reason = f"{type(reason).__name__}: {reason}"

    @staticmethod
    def report(*args, **kwargs):
        """RecBole's ``objective_function`` reports every trial to ray; without ray there
        is no ray session to report to (hyperopt tuning), so nothing is done."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            f"ray.tune.{name} is needed for RecBole's hyper-parameter tuning, but ray "
            f"could not be imported ({self._reason}). Install a working ray "
            "(e.g. `pip install 'setuptools<81'` so ray finds pkg_resources); "
            "training and evaluation do not need it."
        )


def import_quick_start_without_ray() -> bool:
    """Import ``recbole.quick_start`` even when ``import ray`` fails.

    Returns True when the placeholder was needed.
    """
    if "recbole.quick_start.quick_start" in sys.modules:
        return False
    try:
        from ray import tune  # noqa: F401
        return False
    except Exception as exc:  # ray raises various errors when its deps are broken
        reason = exc
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "ray" or k.startswith("ray.")}
    placeholder = types.ModuleType("ray")
    placeholder.tune = _RayUnavailable(reason)
    sys.modules["ray"] = placeholder
    try:
        import recbole.quick_start  # noqa: F401
    finally:
        sys.modules.pop("ray", None)
        sys.modules.update(saved)
    return True


def import_recbole_models_without_anomaly_mode() -> bool:
    """Import RecBole's models; undo the anomaly mode that importing SINE turns on.

    Returns True when anomaly mode was switched off again.
    """
    already_loaded = "recbole.model.sequential_recommender.sine" in sys.modules
    was_enabled = torch.is_anomaly_enabled()
    import recbole.model.sequential_recommender  # noqa: F401  (imports sine)

    if not already_loaded and not was_enabled and torch.is_anomaly_enabled():
        torch.autograd.set_detect_anomaly(False)
        return True
    return False


def flops_counter_skipping(is_plugin_model, original):
    """RecBole's ``get_flops`` that returns 0 (no deep copy) for the plugin's models."""

    def get_flops(model, dataset, device, logger, transform, verbose=False):
        if is_plugin_model(model):
            logger.info("FLOPs count skipped for %s (LLM backbone; a copy would double memory)",
                        type(model).__name__)
            return 0
        return original(model, dataset, device, logger, transform, verbose)

    get_flops.__wrapped__ = original
    return get_flops


def skip_flops_for_plugin_models() -> None:
    """Install :func:`flops_counter_skipping` where ``run_recbole`` looks it up."""
    import recbole.quick_start.quick_start as qs

    patching.replace(qs, "get_flops", lambda original: flops_counter_skipping(is_plugin_model, original))


def default_no_negatives_for_ce_loss() -> None:
    """``run_recbole --model=SASRec`` fails in stock RecBole 1.2.1: overall.yaml samples
    one training negative by default, and the config check then rejects CE-loss models
    ("train_neg_sample_args ... should be None when the loss_type is CE"). When the
    user did not set ``train_neg_sample_args`` and the loss is CE, the default becomes
    None, which is what RecBole's CE models need; a user's explicit value is untouched.
    """
    patching.before_default_parameters(_no_negatives_for_ce_loss)


def _no_negatives_for_ce_loss(config) -> None:
    final = config.final_config_dict
    if final.get("loss_type") == "CE" and "train_neg_sample_args" not in config.external_config_dict:
        final["train_neg_sample_args"] = None


# (message start, as pandas 2.x words it) of the FutureWarnings RecBole's data code triggers
RECBOLE_PANDAS_WARNINGS = (
    "A value is trying to be set on a copy of a DataFrame or Series through chained assignment",
    "using <built-in function len> in Series.agg cannot aggregate",
)


def silence_recbole_pandas_warnings() -> None:
    """Ignore exactly RecBole's known pandas FutureWarnings, raised in RecBole's data modules only."""
    import re

    for message in RECBOLE_PANDAS_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(message), category=FutureWarning,
                                module=r"recbole\.data\.")


def _hyperopt_samples_with_generator() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor, patch = (int(p) for p in version("hyperopt").split(".")[:3])
    except (PackageNotFoundError, ValueError):
        return False
    return (major, minor, patch) >= (0, 2, 7)


class _NumpyForHyperTuning(types.ModuleType):
    """Stands for ``numpy`` inside ``recbole.trainer.hyper_tuning``; only
    ``random.RandomState`` differs: a numpy ``Generator`` when hyperopt samples with one."""

    def __init__(self):
        super().__init__("numpy")
        self.random = types.SimpleNamespace(RandomState=self._random_state)

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def _random_state(seed=None):
        return np.random.default_rng(seed) if _hyperopt_samples_with_generator() else np.random.RandomState(seed)


def seed_hyperopt_exhaustive_search_with_a_generator() -> None:
    import recbole.trainer.hyper_tuning as hyper_tuning

    if not isinstance(hyper_tuning.np, _NumpyForHyperTuning):
        hyper_tuning.np = _NumpyForHyperTuning()


class MissingTimeFieldError(UserError, ValueError):
    pass


class AtomicFileEncodingError(UserError, ValueError):
    pass


def undecodable_position(path: str, encoding: str) -> tuple[int, int, bytes] | None:
    """(line number, column of the byte within the line, the byte) of the first text
    in ``path`` that ``encoding`` cannot decode, both counted from 1; None if all decodes."""
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError as exc:
                return number, exc.start + 1, line[exc.start : exc.start + 1]
    return None


def check_atomic_files() -> None:
    """Check an atomic file's structure before RecBole reads it, and turn RecBole's bare
    ``UnicodeDecodeError`` and float conversion errors into errors that name the file,
    the line and the field (:mod:`recbole_hllm.data.atomic_files`)."""
    from recbole.data.dataset import Dataset

    patching.replace(Dataset, "_load_feat", _checking_atomic_file)


def _checking_atomic_file(original):
    def _load_feat(self, filepath, source):
        from recbole_hllm.data import atomic_files

        encoding = self.config["encoding"] or "utf-8"
        separator = self.config["field_separator"]
        try:
            load_col, unload_col = self._get_load_and_unload_col(source)
            if load_col != set():  # else RecBole does not read the file
                atomic_files.check_atomic_file(filepath, separator, encoding, load_col, unload_col)
            return original(self, filepath, source)
        except UnicodeDecodeError as exc:
            where = undecodable_position(filepath, encoding)
            place = f"line {where[0]}, column {where[1]}: byte 0x{where[2].hex()}" if where else str(exc)
            raise AtomicFileEncodingError(
                f"{filepath}: {place} is not valid {encoding} text. Save the file as {encoding}, or set the "
                "RecBole key `encoding` to the file's encoding (e.g. encoding: latin-1).") from None
        except UserError:
            raise
        except ValueError as exc:
            explained = atomic_files.explain_value_error(exc, filepath, separator, self.config["seq_separator"],
                                                         encoding)
            if explained is None:
                raise
            raise atomic_files.AtomicFileError(explained) from None

    return _load_feat


def _header_names(path: str, config) -> list[str] | None:
    """Field names in the header of atomic file ``path`` (None if it cannot be read)."""
    try:
        with open(path, encoding=config["encoding"] or "utf-8") as f:
            header = f.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError):
        return None
    return [field.partition(":")[0] for field in header.split(config["field_separator"])]


def require_time_field_for_sequences() -> None:
    """Check for the time field before RecBole's ``SequentialDataset.data_augmentation``
    sorts by it, with an error that says what to do."""
    from recbole.data.dataset import SequentialDataset

    patching.replace(SequentialDataset, "data_augmentation", _time_field_checked_first)


def _time_field_checked_first(original):
    def data_augmentation(self):
        field = self.time_field
        if field is None or field not in self.inter_feat:
            name = self.config["dataset"]
            path = os.path.join(self.dataset_path, name + ".inter")
            if field is not None and field in (_header_names(path, self.config) or ()):
                load_col = (self.config["load_col"] or {}).get("inter")
                raise MissingTimeFieldError(
                    f"{self.config['model']} is a sequential model: it orders each user's interactions by time, "
                    f"and {path} has the time field {field!r}, but load_col does not load it "
                    f"(load_col['inter'] = {load_col!r}). Add {field!r} to load_col['inter'], or set "
                    "load_col: None to load every column.")
            raise MissingTimeFieldError(
                f"{self.config['model']} is a sequential model: it orders each user's interactions by time, "
                f"but {name}.inter has no time field {field or '(TIME_FIELD is unset)'!r}. Add a column "
                f"'{field or 'timestamp'}:float' to {path} (any "
                "increasing number per user will do, e.g. the row order), or set TIME_FIELD to the column "
                "that holds the order, and make sure load_col loads it.")
        return original(self)

    return data_augmentation


T = "tests/test_compat.py::"
FIXES = [
    Fix("numpy_aliases", "numpy 2 removed np.float_, np.bool8, np.float, ... which RecBole's Config, metrics and data "
        "code and ray use; only the missing aliases are restored (a Config unpickled from a checkpoint never runs "
        "RecBole's own alias code)", T + "test_numpy_aliases_restored_only_when_missing", restore_numpy_aliases),
    Fix("anomaly_mode", "importing RecBole's SINE switches on torch.autograd.set_detect_anomaly(True), slowing every "
        "model ~2x; it is switched back off only when that import switched it on",
        T + "test_anomaly_mode_left_off", import_recbole_models_without_anomaly_mode),
    Fix("ray", "recbole.quick_start imports ray.tune, which dies without pkg_resources (setuptools >= 81); ray is "
        "only for tuning, so quick_start gets a placeholder whose use raises a clear error and whose report() "
        "(called after every hyperopt trial) does nothing", T + "test_quick_start_imports_when_ray_is_broken",
        import_quick_start_without_ray),
    Fix("torch_load", "torch >= 2.6 loads with weights_only=True and RecBole pickles its Config in checkpoints; only "
        "RecBole's trainer module and the one file load_data_and_model is given load pickles, after a check of the "
        "file's structure (recbole_hllm.checkpoint)", T + "test_torch_load_relaxed_only_for_recbole_checkpoints",
        scope_checkpoint_loading),
    Fix("ce_negatives", "stock run_recbole --model=SASRec dies on RecBole's own default train_neg_sample_args; "
        "unset, it defaults to None for CE-loss models", T + "test_ce_loss_models_get_no_training_negatives_by_default",
        default_no_negatives_for_ce_loss),
    Fix("flops", "run_recbole deep-copies the model to count FLOPs with thop, which doubles the memory of an LLM "
        "backbone; skipped for this plugin's models", T + "test_flops_skipped_for_plugin_models_only",
        skip_flops_for_plugin_models),
    Fix("pandas_warnings", "RecBole's dataset code triggers two pandas FutureWarnings at every load "
        "(fillna(inplace=True) on a column, Series.agg(len)); both work on pandas<3, so those two messages from "
        "RecBole's data modules are silenced and every other warning still shows",
        T + "test_recbole_pandas_warnings_are_silenced_and_others_still_show", silence_recbole_pandas_warnings),
    Fix("time_field", "a sequential dataset without a time field ends in '[timestamp] is not exist in interaction'; "
        "the check comes first and says what to add, or that load_col leaves the field out",
        T + "test_sequential_model_without_time_field_says_what_to_add", require_time_field_for_sequences),
    Fix("hyperopt_exhaustive", "RecBole's exhaustive_search seeds np.random.RandomState, but hyperopt >= 0.2.7 calls "
        "rng.integers; inside recbole.trainer.hyper_tuning only, RandomState(seed) gives default_rng(seed)",
        T + "test_exhaustive_search_runs_every_combination_on_numpy_2",
        seed_hyperopt_exhaustive_search_with_a_generator),
    Fix("atomic_files", "RecBole reads atomic files with no checks: an undecodable byte is a bare UnicodeDecodeError; "
        "a header field without :type, a short row or a float field holding no number fail with bare unpack or "
        "max() errors or are read silently; each now names the file, line and field (data/atomic_files.py)",
        T + "test_undecodable_item_file_names_file_line_and_byte", check_atomic_files),
]


def apply_all() -> dict:
    """Apply every fix of :data:`FIXES` once; returns what each one did (for logs and tests)."""
    return patching.apply_fixes(FIXES)
