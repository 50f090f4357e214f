"""Shared builders of small meshes with known geometry and colour."""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import mutation_order
import numpy as np
import pytest
import torch
import trimesh
import yaml
from PIL import Image

from ulip2_pipeline.config import default_config
from ulip2_pipeline.settings import DatasetSettings, PointsSettings, SourceSettings

REPO = Path(__file__).resolve().parents[1]

# 2x2 texture: top-left red, top-right green, bottom-left blue, bottom-right yellow.
QUADRANT_TEXTURE = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 0]]], dtype=np.uint8)


def expected_quadrant_colour(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Colour of QUADRANT_TEXTURE mapped onto the square [-1, 1]^2 with u=(x+1)/2, v=(y+1)/2."""
    row = (y < 0).astype(int)  # v up: the image's top row is y > 0
    col = (x >= 0).astype(int)
    return QUADRANT_TEXTURE[row, col]


def textured_square() -> trimesh.Trimesh:
    vertices = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uv = (vertices[:, :2] + 1.0) / 2.0
    image = Image.fromarray(np.kron(QUADRANT_TEXTURE, np.ones((8, 8, 1), np.uint8)))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image)
    return trimesh.Trimesh(
        vertices, faces, visual=trimesh.visual.TextureVisuals(uv=uv, material=material), process=False
    )


@pytest.fixture
def textured_square_glb(tmp_path: Path) -> Path:
    path = tmp_path / "square.glb"
    path.write_bytes(textured_square().export(file_type="glb"))
    return path


@pytest.fixture
def textured_square_obj(tmp_path: Path) -> Path:
    """Hand-written OBJ/MTL/PNG, so the UV convention is checked against the format, not trimesh."""
    Image.fromarray(np.kron(QUADRANT_TEXTURE, np.ones((8, 8, 1), np.uint8))).save(tmp_path / "quad.png")
    (tmp_path / "square.mtl").write_text("newmtl quad\nKd 1 1 1\nmap_Kd quad.png\n")
    (tmp_path / "square.obj").write_text(
        "mtllib square.mtl\n"
        "v -1 -1 0\nv 1 -1 0\nv 1 1 0\nv -1 1 0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\nvt 0 1\n"
        "usemtl quad\nf 1/1 2/2 3/3\nf 1/1 3/3 4/4\n"
    )
    return tmp_path / "square.obj"


@contextlib.contextmanager
def one_torch_thread():
    """As the launcher sets it (train.threads); torch's default of every core crawls on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def source_settings(**section) -> SourceSettings:
    """A dataset source of the given kind and keys, the schema's defaults filled in."""
    config = default_config(datasets={"test": {"source": section, "render_preset": "test"}})
    return SourceSettings.from_config(config["datasets"]["test"]["source"])


def points_settings(**overrides) -> PointsSettings:
    """The points settings of the schema's defaults, with ``overrides``."""
    return PointsSettings.from_config({**default_config()["datasets"]["test"]["points"], **overrides})


def dataset_settings(seed: int = 0, **points) -> DatasetSettings:
    """A dataset's settings from the schema's defaults, with its seed and ``points`` overrides."""
    dataset = default_config()["datasets"]["test"]
    return DatasetSettings.from_config({**dataset, "seed": seed, "points": {**dataset["points"], **points}})


# --- Snakemake end to end: one run of the demo set shared by every test that reads its outputs ---


def snakemake(workdir, *args, check=True, env=None):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=2400, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{result.stdout}\n{result.stderr}")
    return result


def write_config(workdir, **demo_source):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"]["demo"]["source"].update(demo_source)
    # The real demo preset (12 views at 224 px) takes minutes; the wiring is the same at 64 px.
    config["render_presets"]["demo"].update(views=3, resolution=64, samples=4)
    config["triplets"]["row_group_rows"] = 4
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return config


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One Snakemake run of the demo, shared by every test process (make test runs pytest-xdist workers).

    The first worker to need it runs it under a file lock; the others wait for it and
    read the same folder. Tests only read it (a test that changes it works on a copy).
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the folder all workers' temporary folders live in
    workdir, done = shared / "demo-shared", shared / "demo-shared.done"
    with open(shared / "demo-shared.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            workdir.mkdir(exist_ok=True)
            write_config(workdir)
            first = snakemake(workdir)
            done.write_text(first.stdout + first.stderr)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    return workdir, config, done.read_text()


# --- mutation testing (make mutation): measure each test's cost once, then run a mutant's cheapest tests first ---
pytest_configure = mutation_order.freeze_inherited_heap
pytest_runtest_logreport = mutation_order.record_cost
pytest_sessionfinish = mutation_order.save_costs


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    mutation_order.cheapest_first(items)
