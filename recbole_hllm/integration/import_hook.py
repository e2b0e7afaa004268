"""Run a function right after a package's own ``__init__`` has run, on its first import.

``import recbole_hllm`` must fix and extend RecBole, but importing RecBole (and with it
torch, scikit-learn and scipy) costs seconds that the console scripts which never
touch RecBole (``hllm-eval``, ``hllm-serve``, ``hllm-build-creatives``) should not
pay. So the fixes are attached to the import of ``recbole`` itself: whatever imports
RecBole first, the fixes are in place before any of RecBole's submodules is
imported, exactly as if they were appended to ``recbole/__init__.py``. If RecBole
is already imported, they run at once. If it is not installed, that first import
raises :class:`MissingPackageError` with the given one-line advice instead of Python's
bare ``No module named``.

:func:`plugin_module_running` says whether one of the plugin's own modules is being
imported at this moment (:func:`track_imports` follows them): the registration must
then wait, or it would import that half-run module again.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from typing import Callable

from recbole_hllm.errors import UserError


class MissingPackageError(UserError, ModuleNotFoundError):
    """A required package is not installed; the message says how to install it. A
    ``UserError``, so the console scripts print it as one line."""


def when_imported(package: str, callback: Callable[[], None], missing: str | None = None) -> None:
    """Call ``callback()`` once ``package`` is imported: now if it already is, else
    at the end of its ``__init__`` (its submodules still to come). ``missing``: the
    message of the :class:`MissingPackageError` its import raises if it is not installed."""
    if package in sys.modules:
        callback()
        return
    waiting = next((f for f in sys.meta_path if isinstance(f, _AfterInit) and f.package == package), None)
    if waiting is None:
        sys.meta_path.insert(0, _AfterInit(package, [callback], missing))
    else:
        if callback not in waiting.callbacks:
            waiting.callbacks.append(callback)
        waiting.missing = waiting.missing or missing


class _AfterInit(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the real loader's ``exec_module`` of one package."""

    def __init__(self, package: str, callbacks: list[Callable[[], None]], missing: str | None = None):
        self.package, self.callbacks, self.missing = package, callbacks, missing

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.package:
            return None
        sys.meta_path.remove(self)  # one shot; the real finders answer from here on
        spec = importlib.util.find_spec(fullname)
        if spec is None and self.missing:
            raise MissingPackageError(self.missing, name=fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader, callbacks = spec.loader, self.callbacks
        run_init = loader.exec_module

        def exec_module(module):
            run_init(module)
            del loader.exec_module  # the loader is this file's own; give it back unchanged
            for callback in callbacks:
                callback()

        loader.exec_module = exec_module
        return spec


_RUNNING: list[str] = []  # the plugin's modules whose import is under way, outermost first


def plugin_module_running() -> bool:
    """Whether the body of one of the modules :func:`track_imports` follows is running now."""
    return bool(_RUNNING)


def track_imports(prefix: str) -> None:
    """Follow the imports of modules named ``prefix...`` from now on (once per prefix)."""
    if not any(isinstance(f, _Tracker) and f.prefix == prefix for f in sys.meta_path):
        sys.meta_path.insert(0, _Tracker(prefix))


class _Tracker(importlib.abc.MetaPathFinder):
    """Finds nothing itself: asks the other finders, then wraps the loader's ``exec_module``
    of each module under ``prefix`` so :data:`_RUNNING` holds it while its body runs."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.prefix):
            return None
        spec = next(filter(None, (finder.find_spec(fullname, path, target) for finder in sys.meta_path
                                  if finder is not self and hasattr(finder, "find_spec"))), None)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            _follow(spec.loader, fullname)
        return spec


def _follow(loader, name: str) -> None:
    run_body = loader.exec_module

    def exec_module(module):
        _RUNNING.append(name)
        try:
            run_body(module)
        finally:
            _RUNNING.remove(name)
            del loader.exec_module  # the loader is this module's own: give it back unchanged

    loader.exec_module = exec_module
