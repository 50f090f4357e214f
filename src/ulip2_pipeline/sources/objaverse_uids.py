"""Objaverse 1.0 objects by uid, fetched with the ``objaverse`` package into a local cache.

The package downloads each object to {cache}/glbs/{group}/{uid}.glb and skips files
already there, so a pre-filled cache is used offline as is.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ulip2_pipeline.settings import ObjaverseSource
from ulip2_pipeline.sources import SourceError, SourceObject

CHUNK = 1000


def read_uids(source: ObjaverseSource) -> list[str]:
    uids = list(source.uids)
    if source.uids_file:
        path = Path(source.uids_file)
        if not path.exists():
            raise SourceError(f"uids_file {path} does not exist")
        uids += [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not uids:
        raise SourceError("the objaverse source lists no uids (set `uids` or `uids_file`)")
    return list(dict.fromkeys(u[:-4] if u.endswith(".glb") else u for u in uids))


def _fetch(objaverse, uids: list[str], processes: int) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Fetch in chunks; a chunk that fails is retried uid by uid so one bad uid costs only itself."""
    found, missing = {}, []
    for start in range(0, len(uids), CHUNK):
        chunk = uids[start : start + CHUNK]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found.update(objaverse.load_objects(chunk, download_processes=processes))
            continue
        except Exception:  # noqa: BLE001 - network errors come in many types
            pass
        for uid in chunk:
            try:
                found.update(objaverse.load_objects([uid], download_processes=1))
            except Exception as exc:  # noqa: BLE001
                missing.append((uid, "download_failed", f"{type(exc).__name__}: {exc}"))
    missing_uids = {m[0] for m in missing}
    for uid in uids:
        if uid not in found and uid not in missing_uids:
            missing.append((uid, "unknown_uid", "not in Objaverse's object-paths index"))
    return found, missing


def list_objaverse(source: ObjaverseSource) -> tuple[list[SourceObject], list[tuple[str, str, str]]]:
    import objaverse

    cache = Path(source.cache_dir).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    # The package keeps its cache location in a module global; point it at ours.
    objaverse._VERSIONED_PATH = str(cache)
    uids = read_uids(source)
    paths, missing = _fetch(objaverse, uids, source.download_processes)
    categories: dict[str, str] = {}
    if source.categories == "lvis":
        for category, members in objaverse.load_lvis_annotations().items():
            for uid in members:
                categories.setdefault(uid, category)
    objects = [
        SourceObject(uid=uid, path=Path(paths[uid]), root=cache, category=categories.get(uid))
        for uid in uids
        if uid in paths
    ]
    return objects, missing
