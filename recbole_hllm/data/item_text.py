"""Item text for the item LLM, aligned with RecBole's internal item ids.

RecBole remaps every item token to an internal id and stores item features in
``dataset.item_feat`` with row ``i`` describing internal id ``i``. Texts are built
from that table (never from the raw file order), so text ``i`` always belongs to
internal item ``i``. Row 0 is RecBole's padding item and gets an empty text.
"""
from __future__ import annotations

import numpy as np
from recbole.utils import FeatureType

from recbole_hllm.errors import UserError

MISSING_TEXT_POLICIES = ("error", "item_token")


class ItemTextError(UserError, ValueError):
    pass


def build_item_texts(dataset, text_fields, template: str, missing_text: str) -> list[str]:
    """Return one text per internal item id (index 0 = padding, '').

    Args:
        dataset: a RecBole dataset with the text fields loaded into ``item_feat``.
        text_fields: item fields to include, in order.
        template: format string for one field, e.g. ``"{field}: {value}"``; field parts
            are joined with ``", "``.
        missing_text: ``error`` raises naming the first items without text;
            ``item_token`` uses ``"item <original id>"`` for them.
    """
    item_field = dataset.iid_field
    item_file = f"{dataset.dataset_path}/{dataset.dataset_name}.item"
    if dataset.item_feat is None:
        raise ItemTextError(
            f"HLLM needs item text, but no item features were loaded from {item_file}: "
            "the file is missing or load_col excludes it."
        )
    missing_fields = [f for f in text_fields if f not in dataset.item_feat]
    if missing_fields:
        raise ItemTextError(
            f"text_fields {missing_fields} not found in {item_file} "
            f"(its loaded fields: {sorted(dataset.item_feat.columns)})."
        )
    n_items = dataset.item_num
    row_of_item = _rows_by_item_id(dataset, n_items)
    columns = {f: _field_strings(dataset, f, row_of_item) for f in text_fields}
    texts = [""]
    empty_ids = []
    for item in range(1, n_items):
        parts = [template.format(field=f, value=columns[f][item]) for f in text_fields if columns[f][item]]
        text = ", ".join(parts)
        if not text:
            empty_ids.append(item)
            if missing_text == "item_token":
                text = f"item {dataset.id2token(item_field, item)}"
        texts.append(text)
    if empty_ids and missing_text == "error":
        raw = [str(dataset.id2token(item_field, i)) for i in empty_ids[:10]]
        raise ItemTextError(
            f"{len(empty_ids)} items have no text in fields {list(text_fields)} of {item_file}; "
            f"first {item_field} values: {', '.join(raw)}. Fix the file or set "
            "missing_text: item_token to use the item id as its text."
        )
    return texts


def _column(dataset, field) -> list:
    """A column of ``item_feat`` as a Python list (it is a DataFrame before RecBole's
    ``build()`` and an ``Interaction`` of tensors after)."""
    values = dataset.item_feat[field]
    if hasattr(values, "tolist"):
        return values.tolist()
    return list(values)


def _rows_by_item_id(dataset, n_items: int) -> list[int | None]:
    """Row of ``item_feat`` holding each internal item id (None: the item has no row)."""
    rows: list[int | None] = [None] * n_items
    for row, item in enumerate(_column(dataset, dataset.iid_field)):
        if 0 < int(item) < n_items:
            rows[int(item)] = row
    return rows


def _field_strings(dataset, field: str, row_of_item: list[int | None]) -> list[str]:
    """Render one item field as strings, indexed by internal item id."""
    values = _column(dataset, field)
    ftype = dataset.field2type[field]
    out = []
    for row in row_of_item:
        value = None if row is None else values[row]
        if value is None:
            out.append("")
        elif ftype == FeatureType.TOKEN:
            token_id = int(value) if not _is_nan(value) else 0
            out.append("" if token_id == 0 else str(dataset.id2token(field, token_id)))
        elif ftype == FeatureType.TOKEN_SEQ:
            tokens = [int(t) for t in value if int(t) != 0]
            out.append(" ".join(str(t) for t in dataset.id2token(field, tokens)) if tokens else "")
        elif ftype == FeatureType.FLOAT:
            out.append("" if _is_nan(value) else f"{float(value):g}")
        else:  # FLOAT_SEQ
            out.append(" ".join(f"{float(v):g}" for v in value if not _is_nan(v)))
    return out


def _is_nan(value) -> bool:
    return isinstance(value, float) and np.isnan(value)


def item_field_texts(dataset, field: str) -> list[str]:
    """The plain text of one item field per internal item id (for prompts), '' when absent."""
    if dataset.item_feat is None or field not in dataset.item_feat:
        raise ItemTextError(
            f"field {field!r} (a slot of the creative prompt) is not an item field of "
            f"{dataset.dataset_path}/{dataset.dataset_name}.item"
        )
    return _field_strings(dataset, field, _rows_by_item_id(dataset, dataset.item_num))
