"""What identifies a training run: its output settings and the content of every input shard.

A checkpoint records the fingerprint of the run that wrote it; a run resumes only a
checkpoint with its own fingerprint, and otherwise says what changed and starts over.
Shards are identified by the content digest their writer put in their metadata
(``atomic.content_digest``: a footer read, not a pass over the data).
"""

from __future__ import annotations

import json
from pathlib import Path

from ulip2_pipeline.atomic import content_digest
from ulip2_pipeline.records import Document


def run_fingerprint(settings: Document, shards: dict[str, list]) -> dict:
    """``settings``: everything that changes what training produces (sections of the configuration,
    the world size, the frozen towers' digest); ``shards``: the input files by kind, in input order."""
    canonical = json.loads(json.dumps(settings, sort_keys=True, default=str))
    return {
        "settings": canonical,
        "shards": {kind: [[Path(p).name, content_digest(p)] for p in paths] for kind, paths in shards.items()},
    }


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_flat(inner, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _shard_changes(kind: str, old: list, new: list) -> list[str]:
    old_digests, new_digests = dict(map(tuple, old)), dict(map(tuple, new))
    lines = [f"{kind}/{name} added" for name in new_digests if name not in old_digests]
    lines += [f"{kind}/{name} removed" for name in old_digests if name not in new_digests]
    lines += [
        f"{kind}/{name} changed content"
        for name, digest in new_digests.items()
        if name in old_digests and old_digests[name] != digest
    ]
    if not lines and [n for n, _ in old] != [n for n, _ in new]:
        lines.append(f"{kind}: the same shards in another order")
    return lines


def differences(old: Document, new: Document) -> list[str]:
    """What changed between two fingerprints, one line per setting or shard."""
    before, after = _flat(old.get("settings", {})), _flat(new.get("settings", {}))
    lines = [
        f"{key}: {before.get(key, '(unset)')!r} -> {after.get(key, '(unset)')!r}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
    old_shards, new_shards = old.get("shards", {}), new.get("shards", {})
    for kind in sorted(set(old_shards) | set(new_shards)):
        lines += _shard_changes(kind, old_shards.get(kind, []), new_shards.get(kind, []))
    return lines
