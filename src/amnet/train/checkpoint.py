"""Resumable training checkpoints: model, optimiser, scheduler, epoch, history and RNG states.

Written atomically after every epoch in the safe payload format of :mod:`amnet.model_store`
(tensors, numbers and strings only: loads with ``weights_only=True``).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

from amnet import config as cfgmod
from amnet import storage
from amnet.model_store import load_payload, save_payload
from amnet.names import CONFIG_FILE, TRAIN_STATE
from amnet.runtime import LogFn


def state_uri(out: str, checkpoint_dir: str = "") -> str:
    """Where a stage writing ``out`` keeps its resumable state: ``checkpoint_dir/train_state.pt`` when
    given (the pipeline's per-run-and-task prefix, outside the output artifact, so a retried pod with a
    fresh output folder resumes), else ``out/checkpoints/train_state.pt`` (rerunning into ``out`` resumes)."""
    if checkpoint_dir:
        return storage.join(checkpoint_dir, TRAIN_STATE)
    return storage.join(out, "checkpoints", TRAIN_STATE)


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
                        history: list[dict], scheduler: Any = None, best: dict | None = None) -> None:
    """Everything needed to resume after ``epoch`` (1-based count of finished epochs); ``best``: the
    best epoch so far by validation (``{"epoch", "score", "model"}``) when training keeps the best epoch."""
    payload = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "history": history,
        "rng": rng_state(),
    }
    if best is not None:
        payload["best"] = best
    save_payload(uri, payload)


def load_best(uri: str) -> dict | None:
    """The best epoch kept in the checkpoint ``uri`` (see :func:`save_training_state`), if any."""
    return load_payload(uri).get("best") if storage.exists(uri) else None


def end_epoch(uri: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, epoch: int,
              history: list[dict], row: dict, log: LogFn | None, main: bool, best: dict | None = None) -> None:
    """The end of epoch ``epoch`` (1-based) of a training loop: ``row`` appended to ``history``, then, on
    rank 0 only (``main``), logged (when ``log`` is given) and the training state saved to ``uri``."""
    history.append(row)
    if log and main:
        log(row, epoch)
    if main:
        save_training_state(uri, model, optimizer, epoch, history, scheduler, best)


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


def start(out: str, checkpoint_dir: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
          cfg: Any, main: bool, logger: logging.Logger) -> tuple[str, int, list[dict]]:
    """The start of a training loop writing ``out``: resume from its checkpoint (:func:`state_uri`) if there is
    one, every rank (the same state); on rank 0 (``main``) say so on ``logger`` and write ``cfg`` (its
    ``epochs``: the total) to ``out/config.yaml``. Returns (checkpoint URI, finished epochs, history)."""
    uri = state_uri(out, checkpoint_dir)
    done, history = try_resume(uri, model, optimizer, scheduler)  # every rank: the same state
    if done and main:
        logger.info("resuming from %s: %s of %s epochs done", uri, done, cfg.epochs)
    if main:
        storage.write_text(storage.join(out, CONFIG_FILE), cfgmod.to_yaml(cfg))
    return uri, done, history
