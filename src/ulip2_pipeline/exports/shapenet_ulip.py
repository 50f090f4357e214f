"""ULIP's ShapeNet-55 layout, as its ``ShapeNet`` dataset (``data/dataset_3d.py`` of salesforce/ULIP) reads it.

```
{root}/taxonomy.json                      [{"synsetId", "name", "children", "numInstances"}]
{root}/train.txt, test.txt                "{synset}-{model}.npy" per line (ULIP reads both)
{root}/shapenet_pc/{synset}-{model}.npy   (8192, 3) float32: the first 8192 points (the 8k cloud)
{root}/rendered_images/{synset}-{model}/{synset}-{model}_r_{deg:03d}.png            RGB view
{root}/rendered_images/{synset}-{model}/{synset}-{model}_r_{deg:03d}_depth0001.png  its depth
```

ULIP's ``ShapeNet-55.yaml`` points ``DATA_PATH`` at ``{root}``, ``PC_PATH`` at ``shapenet_pc`` and
``IMAGE_PATH`` at ``rendered_images``. Its loader picks a random azimuth from 0, 12, ... 348 and a
random kind (RGB or depth) per sample, so an object is exported only with all 30 of them.

Depth PNGs: 8-bit greyscale, as the Stanford ShapeNet renderer's ``_depth0001.png`` that ULIP's
files come from (near dark, far light, background white); ULIP opens them with PIL and
``convert("RGB")``. The float32 depth (distance along the camera axis, normalised units, 0 = no
surface) is mapped linearly over the depth range of the unit sphere the normalised object lies in,
[D - 1, D + 1] for a camera at distance D from its centre:

    pixel = round(254 * clip((z - (D - 1)) / 2, 0, 1))      for z > 0
    pixel = 255                                             for the background (z = 0)
    z     = D - 1 + 2 * pixel / 254                          back, to within 1/254 of a unit

``depth_encoding.json`` in the root records this and D.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from ulip2_pipeline.atomic import write_bytes
from ulip2_pipeline.exports.common import iter_kept_rows, npy_bytes, read_json, write_json
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.records import Row
from ulip2_pipeline.settings import RenderSettings, ShapeNetSource, SourceSettings

ULIP_AZIMUTHS = tuple(range(0, 360, 12))
ULIP_POINTS = 8192
DEPTH_LEVELS = 254  # object depths use 0..254
DEPTH_BACKGROUND = 255
SHAPENET_UID = re.compile(r"^(\d{8})_([^./]+)$")  # ULIP cuts the model id at the first "."

COLUMNS = ["uid", "category", "xyz", "images", "azimuth_deg", "world_to_camera", "depth"]


def ulip_id(uid: str) -> str | None:
    """``{synset}_{model}`` (our ShapeNet uid) -> ``{synset}-{model}`` (ULIP's), None if not one."""
    match = SHAPENET_UID.match(uid)
    return f"{match.group(1)}-{match.group(2)}" if match else None


def camera_distance(world_to_camera) -> float:
    """Distance of the camera centre from the normalised frame's origin (the object's centre)."""
    matrix = np.asarray(world_to_camera, dtype=np.float64).reshape(4, 4)
    return float(np.linalg.norm(matrix[:3, :3].T @ matrix[:3, 3]))


def encode_depth_png(depth: np.ndarray, distance: float) -> bytes:
    """8-bit greyscale PNG of a float32 depth map (see the module docstring for the mapping)."""
    scaled = np.clip((depth - (distance - 1.0)) / 2.0, 0.0, 1.0)
    pixels = np.where(depth > 0, np.rint(scaled * DEPTH_LEVELS), DEPTH_BACKGROUND).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_depth_png(data: bytes, distance: float) -> np.ndarray:
    """The inverse of ``encode_depth_png``: float32 depth in normalised units, 0 for the background."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)
    depth = distance - 1.0 + 2.0 * pixels / DEPTH_LEVELS
    return np.where(pixels == DEPTH_BACKGROUND, 0.0, depth).astype(np.float32)


def _depth_array(raw: bytes, png: bytes) -> np.ndarray:
    width, height = Image.open(io.BytesIO(png)).size
    return np.frombuffer(raw, dtype="<f4").reshape(height, width)


def _views_by_azimuth(row: Row) -> tuple[dict[int, int], str | None]:
    """Index of the view at each of ULIP's azimuths, or the reason the object cannot be exported."""
    depth = row["depth"] or [None] * len(row["images"])
    by_azimuth = {}
    for index, azimuth in enumerate(row["azimuth_deg"]):
        if depth[index] is not None and abs(azimuth - round(azimuth)) < 1e-6:
            by_azimuth[int(round(azimuth)) % 360] = index
    missing = [a for a in ULIP_AZIMUTHS if a not in by_azimuth]
    if missing:
        return {}, (
            f"missing_views: ULIP's loader needs RGB and depth at azimuths 0, 12, ... 348; "
            f"none at {', '.join(map(str, missing[:5]))}{' ...' if len(missing) > 5 else ''}"
        )
    return {a: by_azimuth[a] for a in ULIP_AZIMUTHS}, None


def export_shapenet_ulip_shard(triplets_path, root, fragment_out, quality: QualityFilter | None = None) -> dict:
    """Points and RGB/depth views of each complete ShapeNet object; a fragment lists them and the skipped."""
    root = Path(root)
    objects, skipped, distances = [], {}, set()
    for row in iter_kept_rows(triplets_path, COLUMNS, quality, batch_size=4):
        name = ulip_id(row["uid"])
        views, reason = _views_by_azimuth(row)
        if name is None:
            reason = "not_shapenet_uid: expected {synset}_{model} (8 digits, then a model id without '.')"
        if reason:
            skipped[row["uid"]] = reason
            continue
        points = np.asarray(row["xyz"][:ULIP_POINTS], dtype=np.float32)
        write_bytes(npy_bytes(points), root / "shapenet_pc" / f"{name}.npy")
        folder = root / "rendered_images" / name
        for azimuth, index in views.items():
            png = row["images"][index]["bytes"]
            distance = camera_distance(row["world_to_camera"][index])
            distances.add(round(distance, 6))
            write_bytes(png, folder / f"{name}_r_{azimuth:03d}.png")
            depth_png = encode_depth_png(_depth_array(row["depth"][index], png), distance)
            write_bytes(depth_png, folder / f"{name}_r_{azimuth:03d}_depth0001.png")
        objects.append({"id": name, "synset": name.split("-")[0], "category": row["category"]})
    fragment = {"objects": objects, "skipped": skipped, "camera_distances": sorted(distances)}
    write_json(fragment, fragment_out, indent=1)
    return fragment


def merge_shapenet_ulip(fragments, root) -> int:
    """taxonomy.json, train.txt (every exported object), an empty test.txt and depth_encoding.json."""
    root = Path(root)
    objects, distances = [], set()
    for fragment in fragments:
        data = read_json(fragment)
        objects += data["objects"]
        distances.update(data["camera_distances"])
    objects.sort(key=lambda o: o["id"])
    counts = Counter(o["synset"] for o in objects)
    names = {o["synset"]: o["category"] or o["synset"] for o in objects}
    taxonomy = [{"synsetId": s, "name": names[s], "children": [], "numInstances": counts[s]} for s in sorted(counts)]
    write_json(taxonomy, root / "taxonomy.json", indent=1)
    write_bytes("".join(f"{o['id']}.npy\n" for o in objects).encode(), root / "train.txt")
    write_bytes(b"", root / "test.txt")  # ULIP concatenates test.txt and train.txt ("whole"); all is training
    write_json(
        {
            "format": "8-bit greyscale PNG",
            "background": DEPTH_BACKGROUND,
            "levels": DEPTH_LEVELS,
            "pixel": "round(levels * clip((z - (D - 1)) / 2, 0, 1)), background for z = 0",
            "depth": "z = D - 1 + 2 * pixel / levels: distance along the camera axis, normalised units",
            "camera_distances_D": sorted(distances),
        },
        root / "depth_encoding.json",
        indent=1,
    )
    return len(objects)


def shapenet_ulip_applies(source: SourceSettings, preset: RenderSettings) -> bool:
    """Whether a dataset's objects can be in ULIP's ShapeNet layout: ShapeNet uids, 30 views every 12°, depth."""
    return isinstance(source, ShapeNetSource) and preset.views == len(ULIP_AZIMUTHS) and preset.depth


def shapenet_ulip_datasets(config: Mapping[str, Any], names: list[str]) -> list[str]:
    """The datasets among ``names`` (of a validated ``config``) that the ShapeNet layout applies to
    (the default target builds it for them)."""
    chosen = []
    for name in names:
        dataset = config["datasets"][name]
        preset = RenderSettings.from_config(config["render_presets"][dataset["render_preset"]])
        if shapenet_ulip_applies(SourceSettings.from_config(dataset["source"]), preset):
            chosen.append(name)
    return chosen
