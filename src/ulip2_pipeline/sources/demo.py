"""The embedded demo set, generated deterministically from code (no binary fixtures in git).

Six labelled shape classes with varied proportions. Appearance rotates through a
UV texture, vertex colours, a plain material colour and no colour at all; mugs,
tables and bottles are multi-mesh scenes whose parts are placed by node
transforms. Formats: glb, ply, obj and stl. Optionally a few unreadable files
exercise the failure ledger.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

CLASSES = ("mug", "table", "bottle", "crate", "ball", "cone")
APPEARANCES = ("texture", "vertex", "material", "plain")


def _translate(x=0.0, y=0.0, z=0.0) -> np.ndarray:
    return trimesh.transformations.translation_matrix([x, y, z])


def _y_up(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """trimesh primitives are built along z; the demo set is y-up like glTF."""
    mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))
    return mesh


def _parts(cls: str, rng: np.random.Generator) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """(mesh in its own frame, node transform) pairs of one object of class ``cls``."""
    s = rng.uniform(0.7, 1.4, size=3)
    if cls == "mug":
        radius, height = 0.4 * s[0], 0.9 * s[1]
        body = _y_up(trimesh.creation.cylinder(radius=radius, height=height, sections=40))
        handle = trimesh.creation.torus(
            major_radius=0.22 * s[1], minor_radius=0.05, major_sections=32, minor_sections=12
        )
        return [(body, np.eye(4)), (handle, _translate(x=radius + 0.1 * s[2]))]
    if cls == "table":
        width, depth, height = 1.2 * s[0], 0.8 * s[2], 0.7 * s[1]
        top = trimesh.creation.box(extents=[width, 0.06, depth])
        legs = [
            (
                _y_up(trimesh.creation.cylinder(radius=0.04, height=height, sections=16)),
                _translate(sx * (width / 2 - 0.08), -height / 2, sz * (depth / 2 - 0.08)),
            )
            for sx in (-1, 1)
            for sz in (-1, 1)
        ]
        return [(top, np.eye(4))] + legs
    if cls == "bottle":
        radius, body_h, neck_h = 0.25 * s[0], 0.8 * s[1], 0.35 * s[2]
        body = _y_up(trimesh.creation.cylinder(radius=radius, height=body_h, sections=32))
        neck = _y_up(trimesh.creation.cylinder(radius=radius * 0.35, height=neck_h, sections=24))
        cap = _y_up(trimesh.creation.cylinder(radius=radius * 0.4, height=0.06, sections=24))
        return [
            (body, np.eye(4)),
            (neck, _translate(y=(body_h + neck_h) / 2)),
            (cap, _translate(y=body_h / 2 + neck_h + 0.03)),
        ]
    if cls == "crate":
        return [(trimesh.creation.box(extents=[0.8 * s[0], 0.6 * s[1], 0.7 * s[2]]), np.eye(4))]
    if cls == "ball":
        sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
        sphere.apply_scale([s[0], 0.85 + 0.15 * s[1], s[0]])
        return [(sphere, np.eye(4))]
    if cls == "cone":
        return [(_y_up(trimesh.creation.cone(radius=0.4 * s[0], height=1.0 * s[1], sections=40)), np.eye(4))]
    raise ValueError(f"unknown demo class {cls!r}")


def _palette(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3), dtype=np.uint8)


def _texture(rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Four vertical stripes of distinct colours: easy to check in renders and samples."""
    colours = _palette(rng, 4)
    stripes = np.repeat(colours, size // 4, axis=0)  # (size, 3) one colour per column band
    return Image.fromarray(np.broadcast_to(stripes[None, :, :], (size, size, 3)).copy())


def _planar_uv(mesh: trimesh.Trimesh) -> np.ndarray:
    lo, hi = mesh.bounds
    extent = np.where(hi - lo > 1e-9, hi - lo, 1.0)
    return ((mesh.vertices[:, :2] - lo[:2]) / extent[:2]).clip(0.0, 1.0)


def _paint(mesh: trimesh.Trimesh, appearance: str, rng: np.random.Generator) -> trimesh.Trimesh:
    if appearance == "texture":
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=_texture(rng), metallicFactor=0.0, roughnessFactor=0.8
        )
        mesh.visual = trimesh.visual.TextureVisuals(uv=_planar_uv(mesh), material=material)
    elif appearance == "vertex":
        low, high = _palette(rng, 2).astype(np.float64)
        t = (mesh.vertices[:, 1] - mesh.bounds[0, 1]) / max(np.ptp(mesh.vertices[:, 1]), 1e-9)
        rgb = (low[None] * (1 - t[:, None]) + high[None] * t[:, None]).round().astype(np.uint8)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.c_[rgb, np.full(len(rgb), 255, np.uint8)])
    elif appearance == "material":
        colour = np.append(_palette(rng, 1)[0], 255)
        mesh.visual = trimesh.visual.TextureVisuals(
            material=trimesh.visual.material.PBRMaterial(baseColorFactor=colour, metallicFactor=0.0)
        )
    return mesh


def _file_name(cls: str, index: int, appearance: str, multi_part: bool) -> str:
    if multi_part or appearance in ("texture", "material"):
        ext = "glb"
    elif appearance == "vertex":
        ext = "ply"
    else:
        ext = "obj" if CLASSES.index(cls) % 2 else "stl"
    return f"{cls}_{index:03d}.{ext}"


def build_object(cls: str, index: int, seed: int) -> tuple[str, bytes]:
    """(file name, file bytes) of one demo object; identical for the same arguments."""
    rng = np.random.default_rng([seed, CLASSES.index(cls), index])
    appearance = APPEARANCES[index % len(APPEARANCES)]
    parts = _parts(cls, rng)
    name = _file_name(cls, index, appearance, len(parts) > 1)
    if name.endswith(".glb"):
        scene = trimesh.Scene()
        for k, (mesh, transform) in enumerate(parts):
            scene.add_geometry(
                _paint(mesh, appearance, rng),
                node_name=f"{cls}_part{k}",
                geom_name=f"{cls}_mesh{k}",
                transform=transform,
            )
        return name, scene.export(file_type="glb")
    ((mesh, transform),) = parts
    mesh = _paint(mesh.copy(), appearance, rng)
    mesh.apply_transform(transform)
    data = mesh.export(file_type=name.rsplit(".", 1)[1])
    return name, data.encode() if isinstance(data, str) else data


def generate_demo_set(out_dir: str | Path, objects_per_class: int, broken_objects: int, seed: int = 0) -> list[Path]:
    """Write the demo set to ``out_dir`` (replaced atomically as a whole folder)."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for cls in CLASSES:
            (staging / cls).mkdir()
            for index in range(objects_per_class):
                name, data = build_object(cls, index, seed)
                (staging / cls / name).write_bytes(data)
        for index in range(broken_objects):
            # A glb header followed by garbage: the kind of truncated download real sets contain.
            (staging / f"broken_{index:03d}.glb").write_bytes(b"glTF\x02\x00\x00\x00" + bytes(range(64)))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return sorted(p for p in out_dir.rglob("*") if p.is_file())
