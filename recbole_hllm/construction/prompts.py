"""The construction settings and prompts (``properties/construction/cot.yaml``)."""
from __future__ import annotations

import os
import string
from pathlib import Path

import yaml

from recbole_hllm.errors import InvalidInputError

SLOTS = {
    "profile": {"history", "n_items"},
    "rewrite": {"profile", "interests", "title", "description", "max_added_words"},
    "verdict": {"title", "description", "new_title"},
    "repair": {"error"},
}


def default_settings_path() -> Path:
    """The yaml shipped with the package (the repository's properties/ in a checkout)."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "properties", package.parent / "properties"):
        path = candidate / "construction" / "cot.yaml"
        if path.is_file():
            return path
    raise FileNotFoundError("properties/construction/cot.yaml is missing from the installation")


def load_settings(path: str | None = None, overrides: dict | None = None) -> dict:
    """Read the yaml (``path`` or the shipped default), apply ``overrides``, and check
    that every prompt is present and uses only its known slots."""
    path = os.path.expanduser(path) if path else default_settings_path()
    with open(path, encoding="utf-8") as f:
        settings = yaml.safe_load(f)
    if not isinstance(settings, dict):
        raise InvalidInputError(f"{path}: expected a mapping of settings")
    settings.update(overrides or {})
    for step, allowed in SLOTS.items():
        template = settings.get(step)
        if not isinstance(template, str) or not template.strip():
            raise InvalidInputError(f"{path}: prompt {step!r} is missing or empty")
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        if used - allowed:
            raise InvalidInputError(f"{path}: prompt {step!r} uses unknown slots {sorted(used - allowed)}; "
                             f"allowed: {sorted(allowed)}")
    for key in ("history_len", "max_added_words", "repair_retries"):
        if not isinstance(settings.get(key), int) or settings[key] < 0:
            raise InvalidInputError(f"{path}: {key} must be an int >= 0, got {settings.get(key)!r}")
    return settings
