"""Everything that patches or extends RecBole 1.2.1, in one room, apart from the model code.

* :mod:`.import_hook`: runs :func:`install` right after RecBole's own ``__init__``, so
  ``import recbole_hllm`` stays light for the console scripts that never use RecBole;
* :mod:`.registry`: the plugin's model names, resolved wherever RecBole looks one up;
* :mod:`.compat`: fixes for RecBole on numpy 2, torch >= 2.6, setuptools >= 81, ...;
* :mod:`.distributed_fixes`: RecBole's ``--nproc`` mode without CUDA;
* :mod:`.launch`: RecBole's multi-process run with the plugin loaded in every worker;
* :mod:`.patching`: how RecBole's code is changed (one marker, the :class:`~.patching.Fix`
  record, the one wrapper of ``Config._set_default_parameters``).

:func:`install` is the one place that says what is done to RecBole, and in which order.
"""


def install() -> None:
    """Fix RecBole, then make it resolve the plugin's models (called once RecBole is imported).

    Why the registration may wait: when RecBole's first import comes from inside one of
    the plugin's own modules, registering at once would import that half-run module
    again, so the registrations are queued and run at RecBole's first lookup instead
    (:func:`.registry.register_later`)."""
    from recbole_hllm.integration import compat, distributed_fixes, registry
    from recbole_hllm.integration.import_hook import plugin_module_running

    compat.apply_all()  # RecBole on numpy 2, torch >= 2.6, ... (compat.FIXES)
    registry.patch_name_lookups()  # the plugin's names resolve wherever RecBole looks one up
    distributed_fixes.apply_all()  # --nproc without CUDA (distributed_fixes.FIXES)
    registry.register_later(_register_builtin_models)
    registry.register_later(registry.load_entry_points)
    if not plugin_module_running():
        registry.ensure_registered()


def _register_builtin_models() -> None:
    from recbole_hllm.config import properties_dir
    from recbole_hllm.data.creative_dataset import HLLMCreatorDataset
    from recbole_hllm.data.dataset import HLLMDataset
    from recbole_hllm.integration import registry
    from recbole_hllm.model.hllm import HLLM
    from recbole_hllm.model.hllm_creator import HLLMCreator
    from recbole_hllm.trainer import HLLMCreatorTrainer, HLLMTrainer

    props = properties_dir()
    registry.register_model(HLLM, trainer_class=HLLMTrainer, dataset_class=HLLMDataset, properties=props)
    registry.register_model(HLLMCreator, trainer_class=HLLMCreatorTrainer,
                            dataset_class=HLLMCreatorDataset, properties=props)
