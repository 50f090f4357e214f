"""Render-stage benchmark: seconds per object for 12 views, split into start-up, import and render.

Meshes of about 1k, 100k and 1M textured triangles (glb), Cycles 16 samples, at 224^2
and 512^2, through the stage's own supervised worker. "overhead_s" is everything per
object beyond the view renders and the once-per-worker start-up: reset, import,
checks, normalisation, lights and the round trip to the worker. Prints one JSON document.

Usage: python benchmarks/render_bench.py [--device cpu|gpu] [--threads N] [--sizes 224,512]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from points_bench import textured_grid  # noqa: E402

from ulip2_pipeline.config import default_config  # noqa: E402
from ulip2_pipeline.settings import PointsSettings, RenderSettings  # noqa: E402
from ulip2_pipeline.stages.points.stage import points_for_object  # noqa: E402
from ulip2_pipeline.stages.render.stage import render_worker  # noqa: E402

MESHES = {"1k": 22, "100k": 224, "1M": 707}  # grid cells -> 2 * cells^2 triangles


def settings_for(resolution: int, device: str, threads: int) -> RenderSettings:
    """The schema's render defaults (12 views, 16 samples, white background) at ``resolution``."""
    preset = default_config()["render_presets"]["test"]
    preset.update(resolution=resolution, depth=False, device=device, threads=threads, max_faces=10**8, timeout_s=3600.0)
    return RenderSettings.from_config(preset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="224,512")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        meshes, frames = {}, {}
        points = PointsSettings.from_config({**default_config()["datasets"]["test"]["points"], "max_faces": 10**8})
        for name, cells in MESHES.items():
            meshes[name] = tmp / f"{name}.glb"
            meshes[name].write_bytes(textured_grid(cells).export(file_type="glb"))
            cloud = points_for_object(meshes[name], name, None, points, seed=0).cloud
            frames[name] = (cloud.center.tolist(), cloud.scale)  # as the pipeline hands them over
        for resolution in (int(s) for s in args.sizes.split(",")):
            worker = render_worker(settings_for(resolution, args.device, args.threads), tmp)
            try:
                for name, path in meshes.items():
                    center, scale = frames[name]
                    task = {
                        "uid": name,
                        "path": str(path),
                        "up_axis": "y",
                        "center": center,
                        "scale": scale,
                        "log": str(tmp / f"{name}.log"),
                    }
                    startups_before = sum(worker.startups)
                    started = time.perf_counter()
                    result = worker.call(task, timeout_s=3600.0)
                    total = time.perf_counter() - started
                    startup = sum(worker.startups) - startups_before
                    results.append(
                        {
                            "resolution": resolution,
                            "mesh": name,
                            "triangles": result["triangles"],
                            "startup_s": round(startup, 3),
                            "import_s": round(result["import_s"], 3),
                            "setup_s": round(result["setup_s"], 3),
                            "render_s": round(result["render_s"], 3),
                            "per_view_s": round(result["render_s"] / 12, 3),
                            "overhead_s": round(total - startup - result["render_s"], 3),
                            "total_s": round(total, 3),
                        }
                    )
            finally:
                worker.stop()
    print(
        json.dumps(
            {
                "benchmark": "render",
                "engine": "cycles",
                "device": args.device,
                "samples": 16,
                "views": 12,
                "threads": args.threads,
                "note": "startup_s is paid once per worker (per shard job), on its first object",
                "goal": "overhead_s < 0.5 per object",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
