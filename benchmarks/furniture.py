"""Furniture-like meshes made by code, written as third-party collections ship them (OBJ + MTL with a flat
``Kd``, y-up): toilets, washbasins, cabinets, washing machines, chairs, football goals, trucks, lamps,
spheres, in white, off-white, light grey, black and saturated colours, and one checker-textured glb.

The visibility benchmark renders them all; the render tests take a few.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

COLOURS = {
    "white": (1.0, 1.0, 1.0),
    "offwhite": (0.92, 0.92, 0.9),
    "lightgrey": (0.8, 0.8, 0.8),
    "black": (0.03, 0.03, 0.03),
    "red": (0.8, 0.1, 0.1),
    "blue": (0.1, 0.2, 0.7),
}


def _box(extents, at) -> trimesh.Trimesh:
    mesh = trimesh.creation.box(extents=extents)
    mesh.apply_translation(at)
    return mesh


def _cylinder(radius, height, at, axis="z") -> trimesh.Trimesh:
    mesh = trimesh.creation.cylinder(radius=radius, height=height, sections=48)
    if axis != "z":
        mesh.apply_transform(
            trimesh.transformations.rotation_matrix(np.pi / 2, [0, 1, 0] if axis == "x" else [1, 0, 0])
        )
    mesh.apply_translation(at)
    return mesh


def toilet():
    bowl = trimesh.creation.icosphere(subdivisions=3, radius=0.25)
    bowl.apply_scale([1.0, 1.3, 0.8])
    bowl.apply_translation([0, 0.05, 0.35])
    return [_cylinder(0.15, 0.3, [0, 0.05, 0.15]), bowl, _box([0.45, 0.2, 0.4], [0, -0.3, 0.6])]


def washbasin():
    return [_box([0.6, 0.45, 0.15], [0, 0, 0.8]), _cylinder(0.08, 0.75, [0, 0, 0.37])]


def cabinet():
    doors = [_box([0.55, 0.02, 0.8], [x, 0.31, 0.45]) for x in (-0.29, 0.29)]
    return [_box([1.2, 0.6, 0.9], [0, 0, 0.45]), *doors]


def washing_machine():
    return [_box([0.6, 0.6, 0.85], [0, 0, 0.425]), _cylinder(0.2, 0.04, [0, 0.31, 0.45], axis="y")]


def chair():
    legs = [_box([0.05, 0.05, 0.45], [x, y, 0.225]) for x in (-0.22, 0.22) for y in (-0.22, 0.22)]
    return [_box([0.5, 0.5, 0.05], [0, 0, 0.45]), _box([0.5, 0.05, 0.5], [0, -0.225, 0.72]), *legs]


def football_goal():
    return [
        _cylinder(0.03, 2.0, [0, 0, 1.0], axis="x"),
        _cylinder(0.03, 1.0, [-1, 0, 0.5]),
        _cylinder(0.03, 1.0, [1, 0, 0.5]),
    ]


def truck():
    wheels = [_cylinder(0.15, 0.1, [x, y, 0.15], axis="y") for x in (-0.5, 0.9) for y in (-0.37, 0.37)]
    return [_box([1.6, 0.7, 0.6], [0, 0, 0.5]), _box([0.5, 0.7, 0.5], [1.05, 0, 0.45]), *wheels]


def sphere():
    return [trimesh.creation.icosphere(subdivisions=4, radius=0.5)]


def lamp():
    shade = trimesh.creation.cone(radius=0.3, height=0.3, sections=48)
    shade.apply_translation([0, 0, 1.0])
    return [_cylinder(0.15, 0.04, [0, 0, 0.02]), _cylinder(0.02, 1.0, [0, 0, 0.5]), shade]


SHAPES = {
    "toilet": toilet,
    "washbasin": washbasin,
    "cabinet": cabinet,
    "washing_machine": washing_machine,
    "chair": chair,
    "football_goal": football_goal,
    "truck": truck,
    "sphere": sphere,
    "lamp": lamp,
}


def _y_up(shape: str) -> trimesh.Trimesh:
    mesh = trimesh.util.concatenate(SHAPES[shape]())
    mesh.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0]))  # built z-up
    return mesh


def write_obj(path: Path, shape: str, colour: str) -> Path:
    """``shape`` as OBJ + MTL with one material of diffuse ``colour`` and a mild specular, as exporters write."""
    mesh = _y_up(shape)
    lines = [f"mtllib {path.stem}.mtl", "usemtl body"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in mesh.vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    path.write_text("\n".join(lines) + "\n")
    r, g, b = COLOURS[colour]
    path.with_suffix(".mtl").write_text(f"newmtl body\nKa 0 0 0\nKd {r} {g} {b}\nKs 0.2 0.2 0.2\nNs 50\nd 1\nillum 2\n")
    return path


def write_textured_cabinet(path: Path) -> Path:
    """A cabinet with a red-brown checker texture (glb)."""
    mesh = _y_up("cabinet")
    corners = mesh.vertices[:, [0, 1]]
    uv = (corners - corners.min(0)) / np.ptp(corners, axis=0)
    checker = np.kron(np.indices((8, 8)).sum(0) % 2, np.ones((16, 16)))[..., None] * np.array([200, 60, 30]) + 40
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(checker.astype(np.uint8)))
    path.write_bytes(mesh.export(file_type="glb"))
    return path


LIGHT = ("white", "offwhite", "lightgrey")
DARK_AND_COLOURED = (("chair", "black"), ("lamp", "black"), ("truck", "red"), ("washing_machine", "blue"))


def write_collection(folder: Path) -> dict[str, Path]:
    """Every shape in every light colour, four dark or coloured objects and the textured cabinet: uid -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {f"{s}_{c}": write_obj(folder / f"{s}_{c}.obj", s, c) for s in SHAPES for c in LIGHT}
    files |= {f"{s}_{c}": write_obj(folder / f"{s}_{c}.obj", s, c) for s, c in DARK_AND_COLOURED}
    files["cabinet_textured"] = write_textured_cabinet(folder / "cabinet_textured.glb")
    return files
