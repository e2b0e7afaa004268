"""The old import paths of modules that moved, kept working with a DeprecationWarning.

The package was regrouped into rooms (``integration/``, ``cli/``, ``backbones/``,
``chat/``). Code written against the old layout still runs, and so do the console
scripts an earlier install generated (they import e.g. ``recbole_hllm.tuning:main``
until the package is reinstalled): importing an old name gives the module that now
lives at the new name, the same object, and warns once, naming the new path.

Three tables, read by :class:`_OldPathFinder` (appended to ``sys.meta_path``, so it is
only asked about names no real module answers to) and by :func:`moved_name`:

* :data:`MOVED`: old module name -> new module name;
* :data:`SPLIT`: old packages that were split: they import as an empty package, and
  their old submodules are in :data:`MOVED`;
* :data:`MOVED_NAMES`: names that left a module that still exists -> their new module
  (that module's ``__getattr__`` calls :func:`moved_name`).

:data:`OLD_SCRIPTS` keeps ``python -m <old module>`` running the console script that
module used to be (:func:`run_moved_script`), with a note naming the new one.

Nothing here imports anything heavy: it runs at ``import recbole_hllm``.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED: dict[str, str] = {
    "recbole_hllm.import_hook": "recbole_hllm.integration.import_hook",
    "recbole_hllm.registry": "recbole_hllm.integration.registry",
    "recbole_hllm.compat": "recbole_hllm.integration.compat",
    "recbole_hllm.distributed.recbole_fixes": "recbole_hllm.integration.distributed_fixes",
    "recbole_hllm.distributed.launch": "recbole_hllm.integration.launch",
    "recbole_hllm.llm.backbone": "recbole_hllm.backbones.backbone",
    "recbole_hllm.llm.embedded": "recbole_hllm.backbones.embedded",
    "recbole_hllm.llm.layer_split": "recbole_hllm.backbones.layer_split",
    "recbole_hllm.llm.prefix_cache": "recbole_hllm.backbones.prefix_cache",
    "recbole_hllm.llm.chat": "recbole_hllm.chat.backend",
    "recbole_hllm.llm.local_chat": "recbole_hllm.chat.local",
    "recbole_hllm.llm.openai_chat": "recbole_hllm.chat.openai_client",
    "recbole_hllm.llm.openai_server": "recbole_hllm.chat.openai_server",
    "recbole_hllm.llm.factory": "recbole_hllm.chat.factory",
    "recbole_hllm.llm.json_text": "recbole_hllm.chat.json_text",
    "recbole_hllm.llm.constrained": "recbole_hllm.chat.constrained",
    "recbole_hllm.tuning": "recbole_hllm.cli.run_hyper",
    "recbole_hllm.console": "recbole_hllm.cli.common",
    "recbole_hllm.construction.cli": "recbole_hllm.cli.build_creatives",
    "recbole_hllm.evaluation.cli": "recbole_hllm.cli.evaluate",
    "recbole_hllm.config_creator": "recbole_hllm.config",
}
SPLIT: dict[str, str] = {"recbole_hllm.llm": "recbole_hllm.backbones and recbole_hllm.chat"}
MOVED_NAMES: dict[tuple[str, str], str] = {
    ("recbole_hllm.cli", "main"): "recbole_hllm.cli.run_recbole",  # recbole_hllm.cli was run_recbole's module
    ("recbole_hllm.cli", "build_parser"): "recbole_hllm.cli.run_recbole",
    ("recbole_hllm.cli", "DEFAULT_DATASET"): "recbole_hllm.cli.common",
    ("recbole_hllm.inference.generate", "main"): "recbole_hllm.cli.generate",
    ("recbole_hllm.chat.openai_server", "main"): "recbole_hllm.cli.serve",
    ("recbole_hllm.chat.openai_server", "build_parser"): "recbole_hllm.cli.serve",
}

# `python -m <old module>` -> (the script's module now, its console script)
OLD_SCRIPTS: dict[str, tuple[str, str]] = {
    "recbole_hllm.cli": ("recbole_hllm.cli.run_recbole", "run_recbole"),
    "recbole_hllm.tuning": ("recbole_hllm.cli.run_hyper", "run_hyper"),
    "recbole_hllm.inference.generate": ("recbole_hllm.cli.generate", "hllm-generate"),
    "recbole_hllm.construction.cli": ("recbole_hllm.cli.build_creatives", "hllm-build-creatives"),
    "recbole_hllm.evaluation.cli": ("recbole_hllm.cli.evaluate", "hllm-eval"),
    "recbole_hllm.llm.openai_server": ("recbole_hllm.cli.serve", "hllm-serve"),
}


def install() -> None:
    """Put the finder of old names on ``sys.meta_path`` (once)."""
    if not any(isinstance(finder, _OldPathFinder) for finder in sys.meta_path):
        sys.meta_path.append(_OldPathFinder())


def moved_name(module: str, name: str):
    """``module.name`` for a name that moved to another module (a module ``__getattr__``)."""
    new = MOVED_NAMES.get((module, name))
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    _warn(f"{module}.{name} moved to {new}.{name}: import it from there")
    return getattr(importlib.import_module(new), name)


class _OldPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in SPLIT:
            _warn(f"{fullname} was split into {SPLIT[fullname]}: import from those")
            return importlib.util.spec_from_loader(fullname, _EmptyPackage(), is_package=True)
        if fullname not in MOVED:
            return None
        _warn(f"{fullname} moved to {MOVED[fullname]}: import that instead")
        return importlib.util.spec_from_loader(fullname, _Alias(importlib.import_module(MOVED[fullname])))


def run_moved_script(old: str) -> None:
    """``python -m <old>``: say where the script went (stderr) and run it; exits with its status."""
    new, script = OLD_SCRIPTS[old]
    print(f"note: python -m {old} is deprecated; the script is `{script}` (python -m {new})", file=sys.stderr)
    sys.exit(importlib.import_module(new).main())


class _Alias(importlib.abc.Loader):
    """Hands the import system an existing module under its old name."""

    def __init__(self, module):
        self.module, self.spec = module, module.__spec__

    def get_code(self, fullname):
        """What ``python -m <old name>`` runs (runpy asks the loader for it)."""
        if fullname in OLD_SCRIPTS:
            source = f"from recbole_hllm.old_paths import run_moved_script\nrun_moved_script({fullname!r})\n"
        else:
            source = f"raise SystemExit({fullname!r} ' is not a script (it moved to ' {self.spec.name!r} ')')\n"
        return compile(source, f"<{fullname}, moved>", "exec")

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the import system set the old name's spec on it: give its own back


class _EmptyPackage(importlib.abc.Loader):
    def create_module(self, spec):
        return None  # the import system's default: an empty module

    def exec_module(self, module):
        module.__doc__ = f"Split; see {SPLIT[module.__name__]}."


def _warn(message: str) -> None:
    """A DeprecationWarning attributed to the importing code, not to importlib's frames
    (Python 3.12+; on 3.11 it points at importlib)."""
    if sys.version_info >= (3, 12):
        warnings.warn(message, DeprecationWarning, skip_file_prefixes=("<frozen importlib", __file__))
    else:
        warnings.warn(message, DeprecationWarning, stacklevel=3)
