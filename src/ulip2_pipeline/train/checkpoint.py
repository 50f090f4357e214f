"""Checkpoint files: atomic writes, every random stream, and resuming only the same run."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.records import Document
from ulip2_pipeline.train.fingerprint import differences

log = logging.getLogger(__name__)


def save_atomic(obj, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state(generators: dict[str, random.Random | torch.Generator]) -> dict:
    """The global streams (torch CPU, every CUDA device, python, numpy) and ``generators``
    (random.Random or torch.Generator objects) by name."""
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    for name, generator in generators.items():
        state[name] = generator.getstate() if isinstance(generator, random.Random) else generator.get_state()
    return state


def restore_rng(state: Document, generators: dict[str, random.Random | torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if state["cuda"] and torch.cuda.is_available():
        devices = min(len(state["cuda"]), torch.cuda.device_count())
        torch.cuda.set_rng_state_all(state["cuda"][:devices])
    for name, generator in generators.items():
        if isinstance(generator, random.Random):
            generator.setstate(state[name])
        else:
            generator.set_state(state[name])


def load_matching(path: Path, fingerprint: Document, device: torch.device) -> dict | None:
    """The checkpoint at ``path`` if it was written by the run ``fingerprint`` identifies; otherwise
    None, after logging why (no checkpoint, unreadable, or what changed)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a torn or foreign file of any kind: start over, say so
        log.warning("%s is unreadable (%s: %s); training starts from epoch 0", path, type(exc).__name__, exc)
        return None
    previous = state.get("fingerprint") if isinstance(state, dict) else None
    if previous != fingerprint:
        changed = differences(previous or {}, fingerprint) if previous else ["the checkpoint records no fingerprint"]
        log.warning(
            "%s belongs to another run; training starts from epoch 0. What changed:\n  %s",
            path,
            "\n  ".join(changed or ["(nothing visible; the fingerprint format changed)"]),
        )
        return None
    return state
