"""Makes the plugin's models visible to every RecBole entry point that looks up a name.

RecBole resolves a model name in several places (``Config``, ``run_recbole``,
``load_data_and_model``, ``get_trainer``, ``create_dataset``), each by convention:
a module ``recbole.model.<kind>.<name.lower()>``, a class ``recbole.trainer.<Name>Trainer``,
a class ``recbole.data.dataset.<Name>Dataset`` and a yaml file in RecBole's own
``properties/``. :func:`register_model` satisfies each convention without touching
RecBole's files, so ``run_recbole(model='HLLM')`` works exactly like a built-in model.

Other packages can add models through the ``recbole_hllm.models`` entry-point group;
each entry point must load a callable that calls :func:`register_model`.
"""
from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass
from importlib import metadata
from logging import getLogger
from pathlib import Path

from recbole_hllm.config import BASE_KEY, rename_old_keys, shipped_datasets_dir, warn_misspelled_keys
from recbole_hllm.errors import UserError
from recbole_hllm.integration import patching

ENTRY_POINT_GROUP = "recbole_hllm.models"
RECBOLE_MODEL_KINDS = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


@dataclass
class PluginModel:
    """What the plugin registered under one model name."""

    model_class: type
    trainer_class: type | None
    dataset_class: type | None
    properties_dir: Path | None


REGISTRY: dict[str, PluginModel] = {}
_DATASET_PROPERTY_DIRS: list[Path] = []
_PENDING: list = []  # registrations waiting for a safe moment (see register_later)


def register_later(registration) -> None:
    """Queue ``registration()`` (a callable that calls :func:`register_model`).

    The plugin's models import RecBole, and RecBole's first import is what registers
    them (:func:`recbole_hllm.integration.install`): when that first import comes from inside one
    of the plugin's own modules, registering at once would import that half-run module
    again. Queued registrations run at RecBole's first model, trainer, dataset or yaml
    lookup (:func:`ensure_registered`), when every import has finished.
    """
    _PENDING.append(registration)


def ensure_registered() -> None:
    """Run the queued registrations (each once, in order)."""
    while _PENDING:
        _PENDING.pop(0)()


def patch_lookups_to_register_first() -> None:
    """RecBole finds a model's trainer and dataset classes by ``getattr`` on
    ``recbole.trainer`` and ``recbole.data.dataset``; a module ``__getattr__`` (PEP 562)
    there runs the queued registrations before RecBole falls back to its generic
    classes. Names RecBole defines itself never reach it."""
    import recbole.data.dataset
    import recbole.trainer

    for module in (recbole.trainer, recbole.data.dataset):
        if "__getattr__" not in vars(module):
            module.__getattr__ = _registering_getattr(module)


def _registering_getattr(module):
    def __getattr__(name):
        if _PENDING:
            ensure_registered()
            if name in vars(module):
                return vars(module)[name]
        raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")

    return __getattr__


def patch_name_lookups() -> None:
    """Every place RecBole resolves a model name or its files: ``get_model``, the yaml
    files a ``Config`` reads, the shipped datasets' path, trainer and dataset classes."""
    patch_get_model()
    patch_config_yaml_loading()
    patch_shipped_dataset_path()
    patch_lookups_to_register_first()


def patch_shipped_dataset_path() -> None:
    """Find the datasets this package ships (e.g. ``ads-synth``) when the user gave no
    ``data_path`` and RecBole's default ``dataset/<name>`` does not hold them."""
    patching.before_default_parameters(_use_shipped_dataset)


def _use_shipped_dataset(config) -> None:
    shipped = shipped_datasets_dir()
    final = config.final_config_dict
    if (shipped is not None and "data_path" not in config.external_config_dict
            and (shipped / config.dataset).is_dir()
            and not os.path.isdir(os.path.join(final["data_path"], config.dataset))):
        final["data_path"] = str(shipped)


def register_model(model_class, trainer_class=None, dataset_class=None, properties=None):
    """Register ``model_class`` (and its trainer / dataset classes) with RecBole by name.

    Args:
        model_class: a RecBole ``AbstractRecommender`` subclass; its ``__name__`` is the
            model name users type.
        trainer_class: registered as ``recbole.trainer.<Name>Trainer`` when given.
        dataset_class: registered as ``recbole.data.dataset.<Name>Dataset`` when given.
        properties: folder holding ``model/<Name>.yaml`` (and ``dataset/*.yaml``) defaults.
    """
    import recbole.data.dataset
    import recbole.trainer

    name = model_class.__name__
    kind = _recbole_kind(model_class)
    module = sys.modules[model_class.__module__]
    alias = f"recbole.model.{kind}.{name.lower()}"
    sys.modules[alias] = module  # importlib.util.find_spec(alias) now returns module.__spec__
    setattr(importlib.import_module(f"recbole.model.{kind}"), name.lower(), module)
    if trainer_class is not None:
        setattr(recbole.trainer, f"{name}Trainer", trainer_class)
    if dataset_class is not None:
        setattr(recbole.data.dataset, f"{name}Dataset", dataset_class)
    props = Path(properties) if properties is not None else None
    if props is not None and (props / "dataset").is_dir() and props not in _DATASET_PROPERTY_DIRS:
        _DATASET_PROPERTY_DIRS.append(props)
    REGISTRY[name] = PluginModel(model_class, trainer_class, dataset_class, props)


def _recbole_kind(model_class) -> str:
    from recbole.utils import ModelType

    return {
        ModelType.GENERAL: "general_recommender",
        ModelType.CONTEXT: "context_aware_recommender",
        ModelType.SEQUENTIAL: "sequential_recommender",
        ModelType.KNOWLEDGE: "knowledge_aware_recommender",
    }[model_class.type]


def is_plugin_model(model) -> bool:
    name = type(model).__name__
    return is_plugin_model_name(name) and isinstance(model, REGISTRY[name].model_class)


def is_plugin_model_name(name: str) -> bool:
    ensure_registered()
    return name in REGISTRY


def load_entry_points() -> list[str]:
    """Run every ``recbole_hllm.models`` entry point; returns the names loaded."""
    loaded = []
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()()
            loaded.append(entry_point.name)
        except Exception as exc:  # a broken third-party plugin must not break ours
            getLogger(__name__).warning("entry point %s failed to register: %s", entry_point.name, exc)
    return loaded


def recbole_model_names() -> list[str]:
    """Class names of RecBole's built-in models, read from its sub-package ``__init__`` files."""
    spec = importlib.util.find_spec("recbole.model")
    root = Path(spec.submodule_search_locations[0])
    names = []
    for kind in RECBOLE_MODEL_KINDS:
        init = root / kind / "__init__.py"
        if init.is_file():
            names += re.findall(r"^from \S+ import (\w+)", init.read_text(), flags=re.M)
    return sorted(set(names))


class UnknownModelError(UserError, ValueError):
    pass


def unknown_model_error(name: str) -> UnknownModelError:
    ensure_registered()
    return UnknownModelError(
        f"Unknown model {name!r}. recbole_hllm models: {', '.join(sorted(REGISTRY))}. "
        f"RecBole models: {', '.join(recbole_model_names())}."
    )


def patch_get_model() -> None:
    """Resolve plugin names first; turn RecBole's misleading import errors into a clear one."""
    import recbole.config.configurator
    import recbole.quick_start.quick_start
    import recbole.utils
    import recbole.utils.utils

    original = recbole.utils.utils.get_model
    if patching.is_ours(original):
        return
    recbole_names = {n.lower(): n for n in recbole_model_names()}

    def get_model(model_name):
        if is_plugin_model_name(model_name):
            return REGISTRY[model_name].model_class
        try:
            return original(model_name)
        except ModuleNotFoundError:
            if str(model_name).lower() in recbole_names:
                raise  # a real RecBole model whose optional dependency is missing
            raise unknown_model_error(model_name) from None
        except (ValueError, AttributeError):
            raise unknown_model_error(model_name) from None

    patching.mark(get_model, original)
    for module in (recbole.utils, recbole.utils.utils, recbole.config.configurator, recbole.quick_start.quick_start):
        module.get_model = get_model


def patch_config_yaml_loading() -> None:
    """Load the plugin's yaml defaults at the same precedence as RecBole's own files.

    RecBole reads, in order: overall -> ``model/<Name>.yaml`` -> sample -> ``dataset/<name>.yaml``
    -> per-type presets, then anything the user passes. The plugin's model yaml is
    read right after RecBole's model step and its dataset yaml right after RecBole's
    dataset step, so users override them exactly as they override RecBole's. For the
    plugin's models, a renamed key given under its old name is read under the new one
    (:func:`recbole_hllm.config.rename_old_keys`), and a user key that no one reads and
    that looks like a misspelled plugin key gets a warning
    (:func:`recbole_hllm.config.warn_misspelled_keys`).
    """
    from recbole.config import Config

    patching.replace(Config, "_load_internal_config_dict", _reading_plugin_yaml)


def _reading_plugin_yaml(original):
    def _load_internal_config_dict(self, model, model_class, dataset):
        model_yaml, dataset_yaml = _plugin_model_yaml(model), _plugin_dataset_yaml(dataset)
        if model_yaml is None and dataset_yaml is None:
            return original(self, model, model_class, dataset)
        self._update_internal_config_dict = _with_plugin_files(self, model_yaml, dataset_yaml, dataset)
        try:
            result = original(self, model, model_class, dataset)
        finally:
            del self._update_internal_config_dict
        if model_yaml is not None:
            one_rank = self.external_config_dict.get("local_rank", 0) == 0  # one rank warns
            rename_old_keys(self.external_config_dict, warn=one_rank)
            if one_rank:
                warn_misspelled_keys(self.external_config_dict, self.internal_config_dict)
        return result

    return _load_internal_config_dict


def _with_plugin_files(config, model_yaml: Path | None, dataset_yaml: Path | None, dataset: str):
    """``config``'s ``_update_internal_config_dict(file)``, which also reads the plugin's
    model yaml (and its bases) right before RecBole's sample step, and its dataset yaml
    right after RecBole's dataset step (after the sample step when RecBole has none)."""
    from recbole.config import Config

    recbole_props = Path(importlib.util.find_spec("recbole").submodule_search_locations[0]) / "properties"
    sample_file = os.path.realpath(recbole_props / "dataset" / "sample.yaml")
    recbole_dataset_file = os.path.realpath(recbole_props / "dataset" / f"{dataset}.yaml")
    has_recbole_dataset = os.path.isfile(recbole_dataset_file)
    update = Config._update_internal_config_dict.__get__(config)

    def update_with_plugin_files(file):
        real = os.path.realpath(file)
        if real == sample_file and model_yaml is not None:
            for path in _with_bases(model_yaml):
                update(str(path))
            config.internal_config_dict.pop(BASE_KEY, None)
        result = update(file)
        after_dataset = real == recbole_dataset_file or (real == sample_file and not has_recbole_dataset)
        if after_dataset and dataset_yaml is not None:
            loaded = update(str(dataset_yaml)) or {}
            config.parameters["Dataset"] += [k for k in loaded if k not in config.parameters["Dataset"]]
        return result

    return update_with_plugin_files


def _with_bases(model_yaml: Path) -> list[Path]:
    """``model_yaml`` preceded by the files its ``_base_`` key names (relative to it), so a
    model that extends another (HLLMCreator extends HLLM) shares its defaults, not a copy."""
    import yaml

    chain, path = [], model_yaml
    while path is not None:
        if path in chain:
            raise ValueError(f"{path}: circular {BASE_KEY}")
        chain.insert(0, path)
        with open(path, encoding="utf-8") as f:
            base = (yaml.safe_load(f) or {}).get(BASE_KEY)
        path = (path.parent / base) if base else None
    return chain


def _plugin_model_yaml(model: str) -> Path | None:
    ensure_registered()
    entry = REGISTRY.get(model)
    if entry is None or entry.properties_dir is None:
        return None
    path = entry.properties_dir / "model" / f"{model}.yaml"
    return path if path.is_file() else None


def _plugin_dataset_yaml(dataset: str) -> Path | None:
    ensure_registered()
    for props in _DATASET_PROPERTY_DIRS:
        path = props / "dataset" / f"{dataset}.yaml"
        if path.is_file():
            return path
    return None
