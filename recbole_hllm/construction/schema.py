"""The JSON each construction step must return, and lenient-but-exact parsing of it.

Small models wrap JSON in prose or code fences, so the first complete top-level
object in the reply is taken; what it contains is then checked strictly against the
step's JSON Schema (``jsonschema``), and a failure names the field and what was
expected, which is what the repair re-ask and the rejects file report.
"""
from __future__ import annotations

import json

import jsonschema

from recbole_hllm.chat.json_text import json_object_end
from recbole_hllm.errors import UserError

# The bounds keep a constrained small model from rambling (and a reply reasonable).
_STRINGS = {"type": "array", "maxItems": 5, "items": {"type": "string", "maxLength": 80}}
_TEXT = {"type": "string", "minLength": 1, "maxLength": 300}

PROFILE = {
    "type": "object",
    "required": ["long_term_interests", "short_term_interests", "preferences", "needs",
                 "delivery_suggestion", "profile"],
    "properties": {
        "long_term_interests": _STRINGS,
        "short_term_interests": _STRINGS,
        "preferences": _STRINGS,
        "needs": _STRINGS,
        "delivery_suggestion": {"type": "string", "maxLength": 200},
        "profile": _TEXT,
    },
}
REWRITE = {
    "type": "object",
    "required": ["matched_profile", "selling_points", "title"],
    "properties": {"matched_profile": {"type": "string", "maxLength": 200}, "selling_points": _STRINGS,
                   "title": {"type": "string", "minLength": 1, "maxLength": 150}},
}
VERDICT = {
    "type": "object",
    "required": ["consistent"],
    "properties": {"consistent": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 200}},
}
SCHEMAS = {"profile": PROFILE, "rewrite": REWRITE, "verdict": VERDICT}


class SchemaError(UserError, ValueError):
    """The reply is not one JSON object matching the step's schema."""


def parse_reply(text: str, step: str) -> dict:
    """The JSON object in ``text``, validated against step ``step``'s schema."""
    obj = json.loads(first_json_object(text)) if "{" in text else None
    if not isinstance(obj, dict):
        raise SchemaError("no JSON object in the reply")
    try:
        jsonschema.validate(obj, SCHEMAS[step])
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise SchemaError(f"field {where}: {exc.message}") from None
    return obj


def first_json_object(text: str) -> str:
    """The first complete top-level ``{...}`` in ``text`` (braces in strings skipped)."""
    end = json_object_end(text)
    if end is None:
        raise SchemaError("the JSON object in the reply is not complete (cut off?)")
    return text[text.find("{"):end]
