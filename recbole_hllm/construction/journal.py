"""Append-only JSONL journal: what makes a construction run resumable.

Every finished result (a profile, a kept or rejected row) is appended and flushed to
disk as soon as its batch returns, so Ctrl-C or a crash loses at most the batch in
flight. The first line holds a fingerprint of the settings; resuming with different
settings is an error rather than a silent mix. A line cut off by a crash is ignored
(its work is redone).
"""
from __future__ import annotations

import json
import os
from logging import getLogger

from recbole_hllm.errors import UserError


class JournalMismatch(UserError, ValueError):
    pass


class Journal:
    def __init__(self, path: str, fingerprint: str, restart: bool = False):
        self.path, self.fingerprint = path, fingerprint
        if restart and os.path.exists(path):
            os.remove(path)
        self.records = self._read() if os.path.exists(path) else []
        if not os.path.exists(path) or os.path.getsize(path) == 0:
            self._write_lines([{"fingerprint": fingerprint}], truncate=True)

    def _read(self) -> list[dict]:
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if not lines or not lines[0].strip():
            return []
        header = json.loads(lines[0])
        if header.get("fingerprint") != self.fingerprint:
            raise JournalMismatch(
                f"{self.path} was written with other settings (dataset, prompts, model, ad strategy or "
                "history length). Pass --restart to discard it, or choose another --out."
            )
        records, torn = [], 0
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                torn += 1  # a write cut off by a crash
        if torn:
            getLogger(__name__).warning("%s: ignored %d incomplete line(s) from an interrupted run", self.path, torn)
            self._rewrite(records)
        return records

    def _rewrite(self, records: list[dict]) -> None:
        tmp = f"{self.path}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for record in [{"fingerprint": self.fingerprint}] + records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, self.path)

    def append(self, records: list[dict]) -> None:
        if records:
            self._write_lines(records)
            self.records.extend(records)

    def _write_lines(self, records: list[dict], truncate: bool = False) -> None:
        with open(self.path, "w" if truncate else "a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
