"""Restricted loading of model files (PyTorch state dicts), one-line errors.

Every model file a stage reads (a Surrogate's ``model.pt``, a neural mobility's weights)
goes through :func:`load_state_dict_file`: ``torch.load(..., weights_only=True)`` only
(never unpickling arbitrary objects), each tensor checked finite, and any failure turned
into one :class:`~scalebridge.errors.ArtifactError` line naming the file. torch's own
message is shortened to its reason; its advice to retry with ``weights_only=False``
(unsafe for a file of unknown origin) is never passed on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from scalebridge.errors import ArtifactError

_MAX_REASON = 160


def short_reason(e: BaseException) -> str:
    """One short line from a loader's exception, without advice about ``weights_only``."""
    text = str(e)
    m = re.search(r"WeightsUnpickler error:\s*([^\n]*)", text)
    if m and m.group(1).strip():
        text = m.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = lines[0] if lines else ""
    # the first sentence that gives no advice to load less safely (weights_only=False,
    # allowlisting globals): those are unsafe for a file of unknown origin
    parts = [p for p in re.split(r"(?<=[.!?])\s+", line)
             if not re.search(r"weights_only|safe_globals|allowlist", p)]
    line = parts[0].strip() if parts else ""
    if not line:
        line = "empty or truncated file" if isinstance(e, EOFError) else "unreadable"
    if len(line) > _MAX_REASON:
        line = line[:_MAX_REASON - 3].rstrip() + "..."
    return f"{type(e).__name__}: {line}"


def _unreadable(path: Path, what: str, reason: str) -> ArtifactError:
    return ArtifactError(f"{path} is not a readable {what} file (damaged or not a model): "
                         f"{reason}")


def load_state_dict_file(path: str | Path, what: str = "model") -> dict[str, Any]:
    """A PyTorch state dict from ``path`` with restricted loading; every tensor finite.

    Raises:
        ArtifactError: missing, unreadable, not a state dict, or non-finite values (one
            line naming the file and, for non-finite values, the tensor).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing {what} file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds of error on a damaged file
        raise _unreadable(path, what, short_reason(e)) from None
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise _unreadable(path, what, f"holds a {type(state).__name__}, not a state dict "
                          "of tensors")
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise ArtifactError(f"{path}: tensor {k!r} has non-finite values (NaN or inf): "
                                f"a damaged {what} file")
    return dict(state)


def load_into(module: Any, state: Mapping[str, Any], path: str | Path, what: str = "model"
              ) -> None:
    """``module.load_state_dict(state)`` with a one-line error when they do not match."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise ArtifactError(f"{path}: the {what} weights do not match the network its "
                            f"settings describe ({short_reason(e)})") from None


def nonfinite_keys(doc: Any, prefix: str = "", skip: Iterable[str] = ()
                   ) -> list[tuple[str, float]]:
    """(dotted key, value) of every non-finite number (NaN, ±inf) in a JSON-like document."""
    skip = set(skip)
    out: list[tuple[str, float]] = []
    if isinstance(doc, Mapping):
        for k, v in doc.items():
            if not prefix and k in skip:
                continue
            out += nonfinite_keys(v, f"{prefix}{k}.")
    elif isinstance(doc, list | tuple):
        for i, v in enumerate(doc):
            out += nonfinite_keys(v, f"{prefix[:-1]}[{i}].")
    elif isinstance(doc, float) and not math.isfinite(doc):
        out.append((prefix[:-1], doc))
    return out


__all__ = ["load_into", "load_state_dict_file", "nonfinite_keys", "short_reason"]
