"""recbole_hllm: HLLM and HLLM-Creator as a RecBole 1.2.1 plugin.

``import recbole_hllm`` applies the RecBole compatibility fixes
(:mod:`recbole_hllm.compat`) and registers the plugin's models with RecBole
(:mod:`recbole_hllm.registry`), after which RecBole's own entry points
(``run_recbole``, ``load_data_and_model``, ``Config``) accept the model names.
"""
from recbole_hllm import compat as _compat
from recbole_hllm import registry as _registry
from recbole_hllm.distributed import recbole_fixes as _distributed_fixes

__version__ = "0.1.0"

_compat.apply_all(_registry.is_plugin_model)
_registry.patch_get_model()
_registry.patch_config_yaml_loading()
_registry.patch_shipped_dataset_path()
_distributed_fixes.apply(lambda name: name in _registry.REGISTRY)


def _register_builtin_models():
    from recbole_hllm.data.creative_dataset import HLLMCreatorDataset
    from recbole_hllm.data.dataset import HLLMDataset
    from recbole_hllm.model.hllm import HLLM
    from recbole_hllm.model.hllm_creator import HLLMCreator
    from recbole_hllm.trainer import HLLMCreatorTrainer, HLLMTrainer

    props = _registry.properties_dir()
    _registry.register_model(HLLM, trainer_class=HLLMTrainer, dataset_class=HLLMDataset, properties=props)
    _registry.register_model(HLLMCreator, trainer_class=HLLMCreatorTrainer,
                             dataset_class=HLLMCreatorDataset, properties=props)


_register_builtin_models()
_registry.load_entry_points()

from recbole_hllm.model.hllm import HLLM  # noqa: E402
from recbole_hllm.model.hllm_creator import HLLMCreator  # noqa: E402

__all__ = ["HLLM", "HLLMCreator", "__version__"]
