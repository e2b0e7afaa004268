"""Finding one JSON object inside model text (prose, code fences or a cut-off reply)."""
from __future__ import annotations


def json_object_end(text: str) -> int | None:
    """Index just past the first complete top-level ``{...}`` in ``text``; None when no
    object has started or it is not complete yet. Braces inside strings are skipped."""
    start = text.find("{")
    if start < 0:
        return None
    depth, in_string, escaped = 0, False, False
    for k in range(start, len(text)):
        ch = text[k]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return k + 1
    return None
