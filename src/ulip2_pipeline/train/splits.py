"""A stable train / held-out split by uid, shared by training and evaluation."""

from __future__ import annotations

import hashlib


def holdout(uid: str, fraction: float) -> bool:
    """True for about ``fraction`` of uids, always the same ones."""
    return int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction
