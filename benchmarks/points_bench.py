"""Points-stage benchmark: ms per object (sampling + colour + FPS) on one core.

Builds textured height-field meshes of about 1k, 100k and 1M triangles (1024^2
texture), saves them as glb, and times the stage's own functions on them.
Prints one JSON document. Usage: python benchmarks/points_bench.py [--repeats N]
"""
from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image  # noqa: E402

from ulip2_pipeline.meshes import load_parts  # noqa: E402
from ulip2_pipeline.points import object_seed  # noqa: E402
from ulip2_pipeline.sampling import farthest_point_order, normalise, sample_surface  # noqa: E402


def textured_grid(cells: int) -> trimesh.Trimesh:
    """A wavy square of 2 * cells^2 triangles with UVs and a 1024^2 texture."""
    lin = np.linspace(-1.0, 1.0, cells + 1)
    x, y = np.meshgrid(lin, lin)
    z = 0.1 * np.sin(4 * x) * np.cos(3 * y)
    vertices = np.c_[x.ravel(), y.ravel(), z.ravel()]
    idx = np.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.r_[np.c_[a, b, c], np.c_[a, c, d]]
    uv = (vertices[:, :2] + 1.0) / 2.0
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image)
    return trimesh.Trimesh(vertices, faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=material),
                           process=False)


def time_ms(fn, repeats):
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        samples.append(1000 * (time.perf_counter() - start))
    return statistics.median(samples), result


def bench(cells: int, repeats: int, count: int, workdir: Path) -> dict:
    path = workdir / f"grid_{cells}.glb"
    path.write_bytes(textured_grid(cells).export(file_type="glb"))
    load_ms, parts = time_ms(lambda: load_parts(path, max_faces=10**8), max(1, repeats // 3))
    rng_seed = object_seed(0, "bench")

    def sample():
        return sample_surface(parts, count, np.random.default_rng(rng_seed), (0.4, 0.4, 0.4))

    sample_ms, surface = time_ms(sample, repeats)
    normalise_ms, (xyz, _, _) = time_ms(lambda: normalise(surface.xyz, surface.centroid), repeats)
    fps_ms, _ = time_ms(lambda: farthest_point_order(xyz), repeats)

    def whole():  # what the stage does per object after loading
        surface = sample()
        normalised, _, _ = normalise(surface.xyz, surface.centroid)
        order = farthest_point_order(normalised)
        return normalised[order], surface.rgb[order]

    total_ms, _ = time_ms(whole, repeats)
    return {"faces": int(sum(len(p.faces) for p in parts)), "file_mb": round(path.stat().st_size / 2**20, 1),
            "colour_source": surface.colour_sources, "load_ms": round(load_ms, 1),
            "sample_and_colour_ms": round(sample_ms, 2), "normalise_ms": round(normalise_ms, 2),
            "fps_ms": round(fps_ms, 2), "points_ms_median": round(total_ms, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--points", type=int, default=10000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench(cells, args.repeats, args.points, Path(tmp)) for cells in (22, 224, 707)]
    print(json.dumps({"benchmark": "points", "unit": "ms per object", "cores": 1, "points": args.points,
                      "repeats": args.repeats, "goal": "points_ms_median <= 50 for ~100k textured faces",
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
