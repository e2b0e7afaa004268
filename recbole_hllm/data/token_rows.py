"""Token-id rows as tensors: what the creative LLM's training step reads instead of text.

Why: tokenizing prompts, titles and profiles inside ``calculate_loss`` made every
training step turn index tensors into Python lists, look strings up and call the
tokenizer; on a GPU that host-side work bounds the step. The creative rows are known
when the model is built, so they are tokenized once into a :class:`TokenTable` (one
padded id tensor, kept as buffers so it follows the model's device), and a step only
gathers rows of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TokenRows:
    """Rows of token ids of different lengths: ``ids [B, W]`` (right-padded with 0,
    ``W`` the longest row) and ``lengths [B]``."""

    ids: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def from_lists(cls, rows: list[list[int]], device: torch.device | str | None = None) -> "TokenRows":
        width = max((len(row) for row in rows), default=0)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
        return cls(ids.to(device), lengths.to(device))

    @classmethod
    def empty(cls, count: int, device: torch.device | str | None = None) -> "TokenRows":
        """``count`` rows of no tokens."""
        return cls(torch.zeros(count, 0, dtype=torch.long, device=device),
                   torch.zeros(count, dtype=torch.long, device=device))

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def device(self) -> torch.device:
        return self.ids.device

    def take(self, index: torch.Tensor | slice) -> "TokenRows":
        """The rows at ``index`` (a tensor of row numbers or a slice), trimmed to their longest."""
        lengths = self.lengths[index]
        width = int(lengths.max()) if len(lengths) else 0
        return TokenRows(self.ids[index, :width], lengths)

    def tolist(self) -> list[list[int]]:
        return [row[:n] for row, n in zip(self.ids.tolist(), self.lengths.tolist())]


def as_token_rows(rows: TokenRows | list[list[int]], device: torch.device) -> TokenRows:
    """``rows`` as :class:`TokenRows` on ``device`` (lists of ids are packed; callers that
    tokenize on the fly, such as generation and the tests, still pass lists)."""
    if isinstance(rows, TokenRows):
        return rows if rows.device == device else TokenRows(rows.ids.to(device), rows.lengths.to(device))
    return TokenRows.from_lists(rows, device)


class TokenTable(nn.Module):
    """A fixed list of token-id rows held as buffers (not saved in checkpoints: they are
    rebuilt from the data). ``table(index)`` gathers the rows at ``index [B]``."""

    def __init__(self, rows: list[list[int]]):
        super().__init__()
        packed = TokenRows.from_lists(rows)
        self.register_buffer("ids", packed.ids, persistent=False)  # [N, W_max]
        self.register_buffer("lengths", packed.lengths, persistent=False)  # [N]

    def __len__(self) -> int:
        return len(self.lengths)

    def forward(self, index: torch.Tensor) -> TokenRows:
        return TokenRows(self.ids, self.lengths).take(index.to(self.ids.device))
