"""Structure checks on RecBole atomic files (``.inter``, ``.item``, ``.user``, ...).

RecBole reads an atomic file with pandas and fails on a broken one with messages that
name neither the file nor the line (``not enough values to unpack``, ``max() arg is an
empty sequence``, ``Some feat is empty``), or reads it without a word: a row with a
missing value gets NaN, a row with a field too many (a stray separator inside a text,
or at the end of the line) is cut to the header's width, or, in the first row, every
column is shifted by one. :func:`check_atomic_file`
reads the file once more before RecBole does, with the csv rules pandas applies, and
raises :class:`AtomicFileError` naming the file, the line, the field and what is
expected. :func:`explain_value_error` turns RecBole's float conversion errors into
such a message after the fact (no cost when the file reads).
"""
from __future__ import annotations

import csv
import re

from recbole_hllm.errors import UserError

FEATURE_TYPES = ("token", "token_seq", "float", "float_seq")
# strings pandas reads as a missing value (pandas._libs.parsers.STR_NA_VALUES, pandas 2.x)
PANDAS_NA_VALUES = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                              "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


class AtomicFileError(UserError, ValueError):
    """An atomic file whose structure RecBole cannot read (or would read wrongly)."""


def _shown(separator: str) -> str:
    return {"\t": "a tab", " ": "a space", ",": "a comma"}.get(separator, repr(separator))


def parse_header(path: str, header: str, separator: str) -> list[tuple[str, str]]:
    """``[(name, type), ...]`` of the header line (newline stripped), or :class:`AtomicFileError`."""
    if not header.strip():
        raise AtomicFileError(
            f"{path}: line 1 is empty: expected the header, name:type fields separated by {_shown(separator)}, "
            f"e.g. user_id:token{separator}item_id:token{separator}timestamp:float.")
    fields = header.split(separator)
    parsed = []
    for number, field in enumerate(fields, start=1):
        name, colon, ftype = field.partition(":")
        if colon and name and ftype in FEATURE_TYPES:
            parsed.append((name, ftype))
            continue
        problem = "has no :type" if not colon else ("has no name" if not name else f"has the type {ftype!r}")
        hint = ""
        if len(fields) == 1 and header.count(":") > 1:
            hint = (f" The header has no field_separator ({_shown(separator)}) between its fields: separate them "
                    "with it, or set field_separator to the file's separator.")
        raise AtomicFileError(
            f"{path}: line 1 (the header), field {number} {field!r} {problem}: expected name:type with type "
            f"one of {', '.join(FEATURE_TYPES)}.{hint}")
    return parsed


def _records(f, separator: str):
    """(line number where the record starts, fields) of each non-blank record after the header,
    split as pandas' python engine splits (csv rules for a one-character separator); a
    ``csv.Error`` (bad quoting) comes in place of the fields, and ends the records."""
    if len(separator) == 1:
        reader = csv.reader(f, delimiter=separator, quotechar='"', doublequote=True, strict=True)
        start = 2  # the header, line 1, was read before; reader.line_num counts the lines after it
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield start, exc
                return
            if fields:
                yield start, fields
            start = reader.line_num + 2
    else:  # pandas splits on a regular expression
        pattern = re.compile(separator)
        for number, line in enumerate(f, start=2):
            line = line.rstrip("\r\n")
            if line:
                yield number, pattern.split(line)


def check_atomic_file(path: str, separator: str, encoding: str, load_col=None, unload_col=None) -> int:
    """Check the header, and every row's field count against it; returns the number of rows.

    ``load_col`` / ``unload_col`` (sets of field names, or None) are RecBole's for this
    file: a row may lack fields RecBole does not load, not ones it does. A
    ``UnicodeDecodeError`` is left to the caller.
    """
    with open(path, encoding=encoding, newline="") as f:
        fields = parse_header(path, f.readline().rstrip("\r\n"), separator)
        names = [name for name, _ in fields]
        loaded = [i for i, name in enumerate(names) if (load_col is None or name in load_col)
                  and (unload_col is None or name not in unload_col)]
        needed = (max(loaded) + 1) if loaded else 0
        rows = 0
        for number, record in _records(f, separator):
            if isinstance(record, csv.Error):
                raise AtomicFileError(
                    f"{path}: line {number}: {record}. A value that starts with a double quote (\") is read up to "
                    "the next one, as CSV does: remove the quote, or quote the whole value and double the quotes "
                    "inside it (\"\"Heat\"\" (1995)\").")
            rows += 1
            if len(record) < needed:
                missing = names[len(record):]
                raise AtomicFileError(
                    f"{path}: line {number} has {len(record)} field{'s' * (len(record) != 1)}, the header has "
                    f"{len(names)}: {', '.join(missing)} missing. Expected {len(names)} values separated by "
                    f"{_shown(separator)} on every line (an empty value still needs its separator).")
            if len(record) > len(names):  # pandas drops the extra values, or shifts every column (first row)
                raise AtomicFileError(
                    f"{path}: line {number} has {len(record)} fields, the header has {len(names)} "
                    f"({', '.join(names)}): a value holds {_shown(separator)}, or the line ends with one? Expected "
                    f"{len(names)} values separated by {_shown(separator)} on every line: remove the extra "
                    "separator, or quote the value that holds it.")
    if rows == 0:
        raise AtomicFileError(
            f"{path} has a header and no rows: expected at least one line of {len(names)} values "
            f"({', '.join(names)}) after the header.")
    return rows


def explain_value_error(exc: ValueError, path: str, separator: str, seq_separator: str, encoding: str) -> str | None:
    """The file, line and field of the value behind RecBole's float conversion error, or None."""
    message = str(exc)
    if not (message.startswith("Unable to convert column") or message.startswith("could not convert string to float")):
        return None
    with open(path, encoding=encoding, newline="") as f:
        fields = parse_header(path, f.readline().rstrip("\r\n"), separator)
        for number, record in _records(f, separator):
            if isinstance(record, csv.Error):
                return None
            for (name, ftype), value in zip(fields, record):
                if ftype == "float" and value not in PANDAS_NA_VALUES and not _is_float(value):
                    return (f"{path}: line {number}, field {name}: {value!r} is not a number (the header declares "
                            f"{name}:float). Fix the value, leave it empty, or declare the field :token.")
                if ftype == "float_seq":
                    bad = [v for v in value.split(seq_separator) if v and not _is_float(v)]
                    if bad:
                        return (f"{path}: line {number}, field {name}: {bad[0]!r} is not a number (the header "
                                f"declares {name}:float_seq, numbers separated by seq_separator "
                                f"{_shown(seq_separator)}). Fix the value, or declare the field :token_seq.")
    return None


def _is_float(value: str) -> bool:
    try:
        float(value)
        return True
    except ValueError:
        return False
