"""Points-stage benchmark: ms per object (sampling + colour + FPS) on one core.

Builds textured height-field meshes of about 1k, 100k and 1M triangles (1024^2
texture), saves them as glb, and times the stage's own functions on them. Then the
Blender reader on the same meshes as fbx and Draco glb (1k and 100k: Blender's import
plus the triangle and colour extraction), and the supervised worker's cost per object
(the stage's own worker against an in-process call on a 12-triangle box, and its
start-up). Prints one JSON document.

Usage: python benchmarks/points_bench.py [--repeats N] [--skip-blender]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image  # noqa: E402

from ulip2_pipeline.config import default_config  # noqa: E402
from ulip2_pipeline.settings import DatasetSettings  # noqa: E402
from ulip2_pipeline.stages.points.meshes import load_parts  # noqa: E402
from ulip2_pipeline.stages.points.sampling import farthest_point_order, normalise, sample_surface  # noqa: E402
from ulip2_pipeline.stages.points.stage import object_seed, points_for_object, points_worker  # noqa: E402


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
    return trimesh.Trimesh(
        vertices, faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=material), process=False
    )


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
    return {
        "faces": int(sum(len(p.faces) for p in parts)),
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "colour_source": surface.colour_sources,
        "load_ms": round(load_ms, 1),
        "sample_and_colour_ms": round(sample_ms, 2),
        "normalise_ms": round(normalise_ms, 2),
        "fps_ms": round(fps_ms, 2),
        "points_ms_median": round(total_ms, 2),
    }


TO_BLENDER_FORMATS = textwrap.dedent("""
    import bpy, sys
    source, fbx, draco = sys.argv[-3:]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=source)
    bpy.ops.export_scene.fbx(filepath=fbx, path_mode="COPY", embed_textures=True)
    bpy.ops.export_scene.gltf(filepath=draco, export_draco_mesh_compression_enable=True)
""")


@contextlib.contextmanager
def quiet_stdout():
    """Blender writes to fd 1 from C; keep stdout for the JSON document."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def bench_blender(cells: int, repeats: int, count: int, workdir: Path) -> list[dict]:
    """The Blender reader (import + extraction in the file frame) and the sampling after it."""
    from ulip2_pipeline.stages.render import blender_mesh  # loads bpy into this process

    source = workdir / f"grid_{cells}.glb"
    fbx, draco = workdir / f"grid_{cells}.fbx", workdir / f"grid_{cells}_draco.glb"
    subprocess.run(
        [sys.executable, "-c", TO_BLENDER_FORMATS, str(source), str(fbx), str(draco)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    results = []
    for path in (fbx, draco):
        read_ms, parts = time_ms(lambda: blender_mesh.read_parts(path, "y", 10**8), max(1, repeats // 3))
        rng_seed = object_seed(0, "bench")

        def whole():
            surface = sample_surface(parts, count, np.random.default_rng(rng_seed), (0.4, 0.4, 0.4))
            normalised, _, _ = normalise(surface.xyz, surface.centroid)
            return normalised[farthest_point_order(normalised)], surface.colour_sources

        points_ms, (_, sources) = time_ms(whole, repeats)
        results.append(
            {
                "format": "draco glb" if path == draco else "fbx",
                "faces": int(sum(len(p.faces) for p in parts)),
                "file_mb": round(path.stat().st_size / 2**20, 2),
                "colour_source": sources,
                "blender_read_ms": round(read_ms, 1),
                "points_ms_median": round(points_ms, 2),
                "total_ms": round(read_ms + points_ms, 1),
            }
        )
    return results


def bench_worker(repeats: int, count: int, workdir: Path) -> dict:
    """What one object costs in the supervised worker beyond the work itself (checksum, IPC, pickling):
    a 12-triangle box sampled in this process and through the stage's worker, at 64 points (the fixed
    cost alone) and at the configured count (10,000 points pickled back)."""
    box = workdir / "box.stl"
    trimesh.creation.box().export(box)
    digest = hashlib.sha256(box.read_bytes()).hexdigest()
    figures = {"faces": 12, "memory_checks": "every 50 ms while an object runs"}
    for points in (64, count):
        dataset = default_config()["datasets"]["test"]
        dataset["points"].update(count=points, prefix_sizes=[], max_faces=10**8, max_memory_mb=8000)
        settings = DatasetSettings.from_config(dataset)
        task = {"uid": "box", "path": str(box), "sha256": digest}
        in_process_ms, _ = time_ms(lambda: points_for_object(box, "box", digest, settings.points, 0), repeats)
        worker = points_worker(settings)
        try:
            first_ms, _ = time_ms(lambda: worker.call(task, 600.0), 1)
            worker_ms, _ = time_ms(lambda: worker.call(task, 600.0), repeats)
        finally:
            worker.stop()
        figures[f"{points}_points"] = {
            "in_process_ms": round(in_process_ms, 2),
            "via_worker_ms": round(worker_ms, 2),
            "overhead_ms_per_object": round(worker_ms - in_process_ms, 2),
        }
        figures["worker_startup_s"] = round(worker.startups[0], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--points", type=int, default=10000)
    parser.add_argument("--skip-blender", action="store_true", help="leave out the Blender reader figures")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench(cells, args.repeats, args.points, Path(tmp)) for cells in (22, 224, 707)]
        worker = bench_worker(args.repeats, args.points, Path(tmp))
        with quiet_stdout():
            blender = (
                []
                if args.skip_blender
                else [r for cells in (22, 224) for r in bench_blender(cells, args.repeats, args.points, Path(tmp))]
            )
    print(
        json.dumps(
            {
                "benchmark": "points",
                "unit": "ms per object",
                "cores": 1,
                "points": args.points,
                "repeats": args.repeats,
                "goal": "points_ms_median <= 50 for ~100k textured faces",
                "results": results,
                "blender_reader": blender,
                "worker": worker,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
