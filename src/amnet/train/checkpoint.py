"""Model artifacts and resumable training checkpoints.

A model artifact is a folder (or ``s3://`` prefix) holding ``model.pt`` and ``config.yaml``.
``model.pt`` holds only tensors, numbers and strings, so it loads with ``weights_only=True``
(no pickle code execution from an untrusted file). Training checkpoints additionally hold the
optimiser state, the epoch and the RNG states, and are written atomically after every epoch.
"""

from __future__ import annotations

import io
import random
import sys
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from amnet import storage
from amnet.errors import AmnetError

MODEL_FILE = "model.pt"


def _canonical(value: Any) -> Any:
    """``value`` with every string interned, recursively through dicts, lists and tuples.

    Pickle writes a repeated string once and refers back to it only when it is the *same object*, so
    the same payload built from freshly computed values or from values loaded back from a checkpoint
    would serialise to different bytes. Interning makes ``torch.save`` byte-identical for equal
    payloads: a rerun that resumes a finished training rewrites the very same ``model.pt``.
    """
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        kind = OrderedDict if isinstance(value, OrderedDict) else dict
        out = kind((_canonical(k), _canonical(v)) for k, v in value.items())
        if hasattr(value, "_metadata"):  # a state_dict's per-module versions
            out._metadata = value._metadata
        return out
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_canonical(v) for v in value)
    return value


def save_payload(uri: str, payload: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(_canonical(payload), buf)
    storage.write_bytes(uri, buf.getvalue())  # atomic: temp + rename, or one S3 PUT


def load_payload(uri: str) -> dict[str, Any]:
    data = storage.read_bytes(uri)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise AmnetError(
            f"{uri}: not a readable amnet checkpoint ({type(exc).__name__}{refused_pickle(exc)}); delete it and "
            "rerun the stage that writes it"
        ) from exc
    if not isinstance(payload, dict):
        raise AmnetError(f"{uri}: not an amnet checkpoint (expected a dict payload)")
    return payload


def refused_pickle(exc: BaseException) -> str:
    """``": refused ..."`` when ``torch.load(weights_only=True)`` met Python code in the file, else ``""``."""
    text = str(exc)
    if "Weights only load failed" in text and "GLOBAL" in text:
        return ": refused, it holds Python objects that could run code, not only tensors"
    return ""


def save_model(out: str, kind: str, variant: str, model: torch.nn.Module, model_config: dict,
               vocab_json: str, extra: dict | None = None) -> str:
    """Write ``out/model.pt``; returns its URI."""
    uri = storage.join(out, MODEL_FILE)
    save_payload(uri, {
        "kind": kind,
        "variant": variant,
        "model_config": model_config,
        "vocab": vocab_json,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    })
    return uri


def load_model_payload(model_dir: str) -> dict[str, Any]:
    uri = model_dir if model_dir.endswith(".pt") else storage.join(model_dir, MODEL_FILE)
    if not storage.exists(uri):
        raise AmnetError(f"{model_dir}: no {MODEL_FILE}; point at the output of `amnet step pretrain` or `train`")
    payload = load_payload(uri)
    for key in ("kind", "model_config", "vocab", "state_dict"):
        if key not in payload:
            raise AmnetError(f"{uri}: checkpoint lacks {key!r}; it was not written by amnet")
    return payload


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as weights_only-safe values."""
    np_state = np.random.get_state()
    return {
        "python": repr(random.getstate()),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    import ast

    random.setstate(_to_tuple(ast.literal_eval(state["python"])))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])


def _to_tuple(value):
    if isinstance(value, (list, tuple)):
        return tuple(_to_tuple(v) for v in value)
    return value


def save_training_state(uri: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                        history: list[dict], scheduler: Any = None) -> None:
    """Everything needed to resume after ``epoch`` (1-based count of finished epochs)."""
    save_payload(uri, {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "history": history,
        "rng": rng_state(),
    })


def try_resume(uri: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any = None) -> tuple[int, list[dict]]:
    """Load a training checkpoint if one exists: returns (finished epochs, history)."""
    if not storage.exists(uri):
        return 0, []
    state = load_payload(uri)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler"):
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["epoch"]), list(state.get("history", []))
