"""Loading a checkpoint the user names: a file RecBole's trainer saved, or a clear error.

RecBole pickles its ``Config`` inside each checkpoint, so these files are loaded with
``weights_only=False``, and only these: the one file a user gives ``hllm-generate
--checkpoint`` or ``load_data_and_model``. Before that, :func:`load_checkpoint` looks
at the file's structure, so a truncated copy, a text file or some other archive is
never unpickled and fails with one line (:class:`CheckpointError`) instead of
``OSError: [Errno 22] Invalid argument``, ``UnpicklingError`` or ``KeyError: 'config'``.
A checkpoint saved before a config key was renamed loads with the key under its new
name (:data:`recbole_hllm.config.RENAMED_KEYS`).
"""
from __future__ import annotations

import os
import zipfile

from recbole_hllm.errors import UserError, UserFileNotFoundError

ZIP_MAGIC = b"PK\x03\x04"
# torch.save(..., _use_new_zipfile_serialization=False): pickle protocol 2, then torch's magic number
LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
REQUIRED_KEYS = ("config", "state_dict")


class CheckpointError(UserError, ValueError):
    """A file given as a checkpoint that is not one (or not a whole one)."""


def _not_one(path: str, why: str, complete: bool = False) -> CheckpointError:
    kind = "a complete recbole_hllm checkpoint" if complete else "a recbole_hllm checkpoint"
    return CheckpointError(f"checkpoint {path} is not {kind}: {why}. Expected a .pth file saved by run_recbole "
                           "(RecBole's trainer, in checkpoint_dir).")


def check_checkpoint_file(path: str) -> None:
    """Raise :class:`CheckpointError` when ``path`` cannot be a whole torch checkpoint (no loading)."""
    if not os.path.isfile(path):
        raise UserFileNotFoundError(f"checkpoint {path} does not exist" + (" (it is a folder)" if os.path.isdir(path)
                                                                          else ""))
    size = os.path.getsize(path)
    if size == 0:
        raise _not_one(path, "the file is empty (0 bytes)", complete=True)
    with open(path, "rb") as f:
        head = f.read(len(LEGACY_TORCH_MAGIC))
    if head.startswith(LEGACY_TORCH_MAGIC):
        return  # torch's pre-1.6 format; torch.load checks the rest
    if not head.startswith(ZIP_MAGIC):
        raise _not_one(path, "it is neither a zip archive (torch's format) nor a legacy torch file")
    if not zipfile.is_zipfile(path):
        raise _not_one(path, f"the zip archive is cut short ({size} bytes, no central directory: an "
                             "interrupted save or copy?)", complete=True)
    with zipfile.ZipFile(path) as archive:
        if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in archive.namelist()):
            raise _not_one(path, "it is a zip archive without torch's data.pkl")


def load_checkpoint(path: str, *args, loader=None, **kwargs) -> dict:
    """``torch.load(path, *args, **kwargs)`` of a RecBole checkpoint, ``weights_only=False``
    unless given (it holds a pickled ``Config``), after :func:`check_checkpoint_file`; the
    result must hold ``config`` and ``state_dict``. ``loader`` replaces ``torch.load``."""
    import pickle

    if loader is None:
        import torch

        loader = torch.load
    check_checkpoint_file(path)
    kwargs.setdefault("weights_only", False)
    try:
        state = loader(path, *args, **kwargs)
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise _not_one(path, f"torch cannot read it ({type(exc).__name__}: {exc})", complete=True) from None
    except RuntimeError as exc:
        if "PytorchStreamReader" not in str(exc) and "archive" not in str(exc):
            raise
        raise _not_one(path, f"torch cannot read it ({str(exc).splitlines()[0]})", complete=True) from None
    if not isinstance(state, dict) or not all(key in state for key in REQUIRED_KEYS):
        if isinstance(state, dict):
            found = f"a dict with the keys {', '.join(map(repr, list(state)[:8]))}" if state else "an empty dict"
        else:
            found = f"a {type(state).__name__}"
        raise _not_one(path, f"the torch file holds {found}, not RecBole's 'config' and 'state_dict'")
    _rename_old_keys(state["config"])
    return state


def _rename_old_keys(config) -> None:
    """A checkpoint saved before a config key was renamed holds the old name: read it as the new one."""
    from recbole_hllm.config import rename_old_keys

    final = getattr(config, "final_config_dict", config)
    if isinstance(final, dict):
        rename_old_keys(final, warn=False)
