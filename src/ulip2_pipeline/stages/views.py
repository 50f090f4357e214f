"""Reading rendered views back from a render shard, with undecodable PNGs reported, not raised."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from ulip2_pipeline.failures import Failure


@dataclass(frozen=True)
class View:
    uid: str
    view: int
    png: bytes

    def image(self) -> Image.Image:
        return Image.open(io.BytesIO(self.png)).convert("RGB")


def view_seed(seed: int, uid: str, view: int) -> int:
    """A per-view seed: the same view samples the same way whatever batch or shard it is in."""
    digest = hashlib.sha256(f"{seed}:{uid}:{view}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def read_views(render_path: str | Path, stage: str) -> tuple[list[View], list[Failure]]:
    """Every view of a render shard whose PNG decodes; the others become failure rows."""
    table = pq.read_table(render_path, columns=["uid", "view", "png"])
    views, failures = [], []
    for uid, view, png in zip(
        table.column("uid").to_pylist(), table.column("view").to_pylist(), table.column("png").to_pylist()
    ):
        try:
            Image.open(io.BytesIO(png)).load()
        except Exception as exc:  # noqa: BLE001 - PIL raises several types for broken data
            failures.append(
                Failure(
                    uid,
                    stage,
                    str(render_path),
                    "corrupt_png",
                    f"view {view}: cannot decode the rendered PNG: {type(exc).__name__}: {exc}",
                )
            )
            continue
        views.append(View(uid, view, png))
    return views, failures
