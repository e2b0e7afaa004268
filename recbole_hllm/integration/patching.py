"""How the plugin changes RecBole's code: one marker, one record per fix, one shared wrapper.

* :func:`replace` swaps a RecBole function for a wrapper of it, once: the wrapper carries
  the one marker (``_recbole_hllm``) that says it is ours and ``__wrapped__``, the
  original. A second call, or a second ``install()``, changes nothing.
* :class:`Fix` is one entry of a table of fixes (:data:`.compat.FIXES`,
  :data:`.distributed_fixes.FIXES`): what it does, why, and the test that fails without
  it; :func:`apply_fixes` applies each entry once per process.
* :func:`before_default_parameters`: both the compatibility fixes and the registration
  need to adjust a ``Config`` right before RecBole fills in its derived defaults, so
  ``Config._set_default_parameters`` is wrapped once, here, and runs their steps in
  the order they were added.
"""
from __future__ import annotations

from dataclasses import dataclass
from logging import getLogger
from typing import Callable

MARK = "_recbole_hllm"


def is_ours(function) -> bool:
    """Whether ``function`` is a wrapper this package installed."""
    return getattr(function, MARK, False)


def mark(wrapper, original):
    """Tag ``wrapper`` as ours and as a wrapper of ``original``; returns it."""
    setattr(wrapper, MARK, True)
    wrapper.__wrapped__ = original
    return wrapper


def replace(owner, name: str, make_wrapper: Callable) -> bool:
    """``owner.name = make_wrapper(owner.name)``, unless it is ours already; True when replaced."""
    original = getattr(owner, name)
    if is_ours(original):
        return False
    setattr(owner, name, mark(make_wrapper(original), original))
    return True


@dataclass(frozen=True)
class Fix:
    """One change to RecBole: ``apply()`` makes it; ``test`` (``file::function``) fails without it."""

    name: str
    why: str
    test: str
    apply: Callable[[], object]


_APPLIED: set[str] = set()


def apply_fixes(fixes: list[Fix]) -> dict:
    """Apply each fix not yet applied in this process; returns ``{name: what apply() returned}``."""
    report = {}
    for fix in fixes:
        if fix.name not in _APPLIED:
            report[fix.name] = fix.apply()
            _APPLIED.add(fix.name)
    getLogger(__name__).debug("recbole_hllm changes to RecBole: %s", report)
    return report


_DEFAULT_STEPS: list[Callable] = []


def before_default_parameters(step: Callable) -> None:
    """Run ``step(config)`` right before RecBole's ``Config._set_default_parameters``,
    after the previously added steps (each step is added once)."""
    from recbole.config import Config

    if step not in _DEFAULT_STEPS:
        _DEFAULT_STEPS.append(step)
    replace(Config, "_set_default_parameters", _steps_first)


def _steps_first(original):
    def _set_default_parameters(self):
        for step in _DEFAULT_STEPS:
            step(self)
        return original(self)

    return _set_default_parameters
