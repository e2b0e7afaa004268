"""recbole_hllm: HLLM and HLLM-Creator as a RecBole 1.2.1 plugin.

``import recbole_hllm`` arranges that RecBole, the moment it is imported (or at once,
if it already is), gets the compatibility fixes (:mod:`recbole_hllm.compat`) and
the plugin's models (:mod:`recbole_hllm.registry`); after that RecBole's own entry
points (``run_recbole``, ``load_data_and_model``, ``Config``) accept the model names.
Waiting for RecBole's import keeps ``import recbole_hllm`` light (no torch,
scikit-learn or RecBole) for the console scripts that never use RecBole
(:mod:`recbole_hllm.import_hook` says why). RecBole is not a declared dependency (its
``ray<=2.6.3`` pin has no wheel for Python 3.12+, so pip could not resolve this package
there): it is installed with ``--no-deps``, and its first import, if it is missing,
fails with :data:`RECBOLE_MISSING`, which the console scripts print as one line.
"""
import sys as _sys

from recbole_hllm.import_hook import when_imported as _when_imported

__version__ = "0.1.0"
RECBOLE_MISSING = ("recbole_hllm needs RecBole 1.2.1, which is not installed: run "
                   "`pip install --no-deps recbole==1.2.1` (--no-deps: its ray pin has no wheel for Python 3.12+; "
                   "recbole_hllm already installed RecBole's other dependencies)")
__all__ = ["HLLM", "HLLMCreator", "__version__"]


def _extend_recbole():
    from recbole_hllm import compat, registry
    from recbole_hllm.distributed import recbole_fixes

    compat.apply_all(registry.is_plugin_model)
    registry.patch_get_model()
    registry.patch_config_yaml_loading()
    registry.patch_shipped_dataset_path()
    registry.patch_lookups_to_register_first()
    recbole_fixes.apply(registry.is_plugin_model_name)
    registry.register_later(_register_builtin_models)
    registry.register_later(registry.load_entry_points)
    half_run = any(getattr(getattr(module, "__spec__", None), "_initializing", False)
                   for name, module in list(_sys.modules.items()) if name.startswith("recbole_hllm."))
    if not half_run:  # else RecBole's first lookup registers (registry.register_later says why)
        registry.ensure_registered()


def _register_builtin_models():
    from recbole_hllm import registry
    from recbole_hllm.data.creative_dataset import HLLMCreatorDataset
    from recbole_hllm.data.dataset import HLLMDataset
    from recbole_hllm.model.hllm import HLLM
    from recbole_hllm.model.hllm_creator import HLLMCreator
    from recbole_hllm.trainer import HLLMCreatorTrainer, HLLMTrainer

    props = registry.properties_dir()
    registry.register_model(HLLM, trainer_class=HLLMTrainer, dataset_class=HLLMDataset, properties=props)
    registry.register_model(HLLMCreator, trainer_class=HLLMCreatorTrainer,
                            dataset_class=HLLMCreatorDataset, properties=props)


def __getattr__(name):
    """``recbole_hllm.HLLM`` and ``recbole_hllm.HLLMCreator``, imported on first use."""
    if name == "HLLM":
        from recbole_hllm.model.hllm import HLLM
        return HLLM
    if name == "HLLMCreator":
        from recbole_hllm.model.hllm_creator import HLLMCreator
        return HLLMCreator
    raise AttributeError(f"module 'recbole_hllm' has no attribute {name!r}")


_when_imported("recbole", _extend_recbole, missing=RECBOLE_MISSING)
