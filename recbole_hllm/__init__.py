"""recbole_hllm: HLLM and HLLM-Creator as a RecBole 1.2.1 plugin.

``import recbole_hllm`` arranges that RecBole, the moment it is imported (or at once,
if it already is), gets the compatibility fixes and the plugin's models
(:func:`recbole_hllm.integration.install`); after that RecBole's own entry
points (``run_recbole``, ``load_data_and_model``, ``Config``) accept the model names.
Waiting for RecBole's import keeps ``import recbole_hllm`` light (no torch,
scikit-learn or RecBole) for the console scripts that never use RecBole
(:mod:`recbole_hllm.integration.import_hook` says why). RecBole is not a declared dependency (its
``ray<=2.6.3`` pin has no wheel for Python 3.12+, so pip could not resolve this package
there): it is installed with ``--no-deps``, and its first import, if it is missing,
fails with :data:`RECBOLE_MISSING`, which the console scripts print as one line.
"""
from recbole_hllm import old_paths as _old_paths
from recbole_hllm.integration import install as _install
from recbole_hllm.integration.import_hook import track_imports as _track_imports
from recbole_hllm.integration.import_hook import when_imported as _when_imported

__version__ = "0.1.0"
RECBOLE_MISSING = ("recbole_hllm needs RecBole 1.2.1, which is not installed: run "
                   "`pip install --no-deps recbole==1.2.1` (--no-deps: its ray pin has no wheel for Python 3.12+; "
                   "recbole_hllm already installed RecBole's other dependencies)")
__all__ = ["HLLM", "HLLMCreator", "__version__"]


def __getattr__(name):
    """``recbole_hllm.HLLM`` and ``recbole_hllm.HLLMCreator``, imported on first use."""
    if name == "HLLM":
        from recbole_hllm.model.hllm import HLLM
        return HLLM
    if name == "HLLMCreator":
        from recbole_hllm.model.hllm_creator import HLLMCreator
        return HLLMCreator
    raise AttributeError(f"module 'recbole_hllm' has no attribute {name!r}")


_track_imports(__name__ + ".")  # for integration.install: is one of our modules half-run?
_old_paths.install()
_when_imported("recbole", _install, missing=RECBOLE_MISSING)
