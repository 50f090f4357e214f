"""Visibility benchmark: can a viewer tell each rendered object from the white background?

Renders the furniture collection (``furniture.py``: white, off-white, light-grey, black, coloured and
textured toilets, washbasins, cabinets, ...) and, when pybullet's meshes are in the test cache, real
third-party meshes (KUKA and Franka arms, duck, teddy, ...) through the render stage's own worker,
once with the lighting before the visibility fix and once with the schema's defaults. For each: the
distribution of every view's visible fraction (the share of the silhouette differing from white by
more than 12/255) and the share of views under 0.5; render seconds per view (the two settings
alternate object by object, so machine noise hits both alike); PSNR of 16-sample views against
256-sample references of the same settings; and whether rendering again gives the same PNG bytes.

Usage: python benchmarks/visibility_bench.py [--resolution 224] [--views 12] [--psnr-objects 6]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from furniture import write_collection  # noqa: E402

from ulip2_pipeline.config import default_config  # noqa: E402
from ulip2_pipeline.settings import RenderSettings  # noqa: E402
from ulip2_pipeline.stages.render.stage import render_worker  # noqa: E402

BEFORE = {"exposure": 0.0, "view_transform": "Standard", "ambient": 0.6, "key_light": 3.0, "fill_light": 1.0}
PYBULLET = Path(os.environ.get("ULIP2_TEST_CACHE") or Path.home() / ".cache" / "ulip2-pipeline") / "pybullet-3.2.7"
REAL = [
    *(f"kuka_iiwa/meshes/link_{i}.obj" for i in range(8)),
    *(f"franka_panda/meshes/visual/link{i}.obj" for i in range(1, 8)),
    "franka_panda/meshes/visual/hand.obj",
    "bunny.obj",
    "cube.obj",
    "duck.obj",
    "soccerball.obj",
    "sphere_smooth.obj",
    "teddy2_VHACD_CHs.obj",
    "textured_sphere_smooth.obj",
    "objects/mug.obj",
]


def real_meshes() -> dict[str, Path]:
    root = PYBULLET / "pybullet_data"
    return {f"real/{name}": root / name for name in REAL if (root / name).is_file()}


def settings(overrides: dict, resolution: int, views: int, samples: int | None = None) -> RenderSettings:
    preset = default_config()["render_presets"]["test"]
    preset.update(views=views, resolution=resolution, depth=False, threads=2, timeout_s=3600.0, **overrides)
    if samples:
        preset["samples"] = samples
    return RenderSettings.from_config(preset)


def group(uid: str) -> str:
    if uid.startswith("real/"):
        return "real"
    colour = uid.rsplit("_", 1)[1]
    return {"white": "white", "offwhite": "white", "lightgrey": "light_grey", "black": "black"}.get(colour, "coloured")


def summary(fractions: list[float]) -> dict:
    values = np.asarray(fractions)
    return {
        "views": len(values),
        "under_0.5": int((values < 0.5).sum()),
        "share_under_0.5": round(float((values < 0.5).mean()), 4),
        "p5": round(float(np.percentile(values, 5)), 3),
        "p25": round(float(np.percentile(values, 25)), 3),
        "median": round(float(np.median(values)), 3),
    }


def psnr(image: bytes, reference: bytes) -> float:
    a, b = (np.asarray(Image.open(io.BytesIO(x)).convert("RGB"), np.float64) for x in (image, reference))
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--views", type=int, default=12)
    parser.add_argument("--psnr-objects", type=int, default=6)
    args = parser.parse_args()
    configs = {"before": BEFORE, "after": {}}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_collection(Path(tmp) / "furniture") | real_meshes()
        workers = {
            name: render_worker(settings(o, args.resolution, args.views), Path(tmp)) for name, o in configs.items()
        }
        fractions = {name: {} for name in configs}
        seconds = {name: 0.0 for name in configs}
        first_png = {}
        try:
            for uid, path in files.items():
                for name, worker in workers.items():
                    task = {"uid": uid, "path": str(path), "up_axis": "y", "log": str(Path(tmp) / "object.log")}
                    result = worker.call(task, timeout_s=3600.0)
                    seconds[name] += result["render_s"]
                    fractions[name][uid] = [v["quality"].visible_fraction for v in result["views"]]
                    if uid == "toilet_white":
                        first_png[name] = (task, [v["png"] for v in result["views"]])
            same_bytes = {}
            for name, worker in workers.items():
                task, pngs = first_png[name]
                same_bytes[name] = [v["png"] for v in worker.call(task, timeout_s=3600.0)["views"]] == pngs
        finally:
            for worker in workers.values():
                worker.stop()
        psnr_uids = [u for u in files if group(u) in ("white", "coloured", "real")][
            :: max(1, len(files) // args.psnr_objects)
        ]
        psnr_uids = psnr_uids[: args.psnr_objects]
        psnrs = {}
        for name, overrides in configs.items():
            values = []
            pair = {s: render_worker(settings(overrides, args.resolution, 4, samples=s), Path(tmp)) for s in (16, 256)}
            try:
                for uid in psnr_uids:
                    task = {"uid": uid, "path": str(files[uid]), "up_axis": "y", "log": str(Path(tmp) / "o.log")}
                    views = {s: [v["png"] for v in w.call(task, timeout_s=3600.0)["views"]] for s, w in pair.items()}
                    values += [psnr(a, b) for a, b in zip(views[16], views[256])]
            finally:
                for worker in pair.values():
                    worker.stop()
            psnrs[name] = round(float(np.mean(values)), 2)
    views_rendered = {name: sum(len(v) for v in fractions[name].values()) for name in configs}
    report = {
        "benchmark": "visibility",
        "resolution": args.resolution,
        "views_per_object": args.views,
        "objects": len(files),
        "real_objects": sum(1 for u in files if u.startswith("real/")),
        "threshold": "visible: differs from white by more than 12/255 in some channel",
        "settings": {name: settings(o, args.resolution, args.views).as_config() for name, o in configs.items()},
    }
    for name in configs:
        every = [f for values in fractions[name].values() for f in values]
        by_group = {}
        for uid, values in fractions[name].items():
            by_group.setdefault(group(uid), []).extend(values)
        report[name] = {
            "all": summary(every),
            "by_group": {g: summary(v) for g, v in sorted(by_group.items())},
            "worst_objects": sorted(
                ((uid, round(float(np.mean(v)), 3)) for uid, v in fractions[name].items()), key=lambda t: t[1]
            )[:8],
            "render_s_per_view": round(seconds[name] / views_rendered[name], 4),
            "psnr_16_vs_256_samples_db": psnrs[name],
            "same_png_bytes_when_rendered_again": same_bytes[name],
        }
    report["render_time_after_vs_before"] = round(seconds["after"] / seconds["before"], 3)
    report["psnr_objects"] = psnr_uids
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
