"""Loading a mesh file with trimesh as a flat list of world-space triangle parts with their colour source.

Every node transform of the scene graph is applied, so a multi-mesh scene samples
exactly as it renders. Each part carries the best colour information it has, in
the order texture > vertex colour > material base colour > none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.points.face_indices import file_index_problem

TEXTURE, VERTEX, FACE, MATERIAL, NONE = "texture", "vertex", "face", "material", "none"


@dataclass
class Part:
    vertices: np.ndarray  # (V, 3) float64, world space
    faces: np.ndarray  # (F, 3) int64
    colour_source: str  # one of TEXTURE, VERTEX, FACE, MATERIAL, NONE
    uv: np.ndarray | None = None  # (V, 2) for TEXTURE
    image: np.ndarray | None = None  # (H, W, 4) uint8 for TEXTURE
    factor: np.ndarray | None = None  # (4,) float multiplier for TEXTURE (glTF baseColorFactor)
    colours: np.ndarray | None = None  # (V, 4) or (F, 4) uint8 for VERTEX / FACE; (4,) for MATERIAL


def _rgba(value) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 3:
        arr = np.append(arr, 255.0 if arr.max() > 1.0 else 1.0)
    if arr.max() > 1.0:
        arr = arr / 255.0
    return arr[:4]


def _accessor_colour_bytes(values) -> np.ndarray:
    """(V, 4) uint8 RGBA of vertex colours as trimesh keeps a glTF COLOR_0 accessor beside a material: floats in
    0..1, normalised unsigned shorts or bytes, RGB or RGBA (RGB gets opaque alpha)."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        values = np.clip(np.rint(values * 255.0), 0, 255)
    elif values.dtype == np.uint16:
        values = np.rint(values / 257.0)
    values = values.astype(np.uint8)
    if values.shape[1] == 3:
        values = np.concatenate([values, np.full((len(values), 1), 255, np.uint8)], axis=1)
    return values


def _uv_pairs(uv) -> np.ndarray:
    """(V, 2) float64 texture coordinates. OBJ's ``vt u [v [w]]`` may give one to three per vertex:
    a missing v is 0 (the format's default), w is not used."""
    uv = np.asarray(uv, dtype=np.float64)
    uv = uv.reshape(len(uv), -1) if uv.size else np.zeros((len(uv), 2))
    if uv.shape[1] < 2:
        uv = np.concatenate([uv, np.zeros((len(uv), 2 - uv.shape[1]))], axis=1)
    return uv[:, :2]


def _material_image_and_colour(material) -> tuple[object, np.ndarray | None]:
    """(PIL image or None, RGBA base colour in 0..1 or None) of a trimesh material."""
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        return material.baseColorTexture, _rgba(material.baseColorFactor)
    if isinstance(material, trimesh.visual.material.SimpleMaterial):
        return material.image, _rgba(material.diffuse)
    return None, None


def _part_from_mesh(mesh: trimesh.Trimesh, transform: np.ndarray) -> Part:
    vertices = trimesh.transformations.transform_points(np.asarray(mesh.vertices, dtype=np.float64), transform)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    part = Part(vertices=vertices, faces=faces, colour_source=NONE)
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.TextureVisuals):
        image, base = _material_image_and_colour(visual.material)
        uv = visual.uv
        if image is not None and uv is not None and len(uv) == len(vertices):
            part.colour_source = TEXTURE
            part.uv = _uv_pairs(uv)
            part.image = np.asarray(image.convert("RGBA"))
            part.factor = base if base is not None else np.ones(4)
            return part
        vertex_colour = getattr(visual, "vertex_attributes", {}).get("color")
        if vertex_colour is not None and len(vertex_colour) == len(vertices):
            part.colour_source, part.colours = VERTEX, _accessor_colour_bytes(vertex_colour)
        elif base is not None:
            part.colour_source, part.colours = MATERIAL, base
        return part
    if isinstance(visual, trimesh.visual.ColorVisuals):
        if visual.kind == "vertex":
            part.colour_source, part.colours = VERTEX, np.asarray(visual.vertex_colors, dtype=np.uint8)
        elif visual.kind == "face":
            part.colour_source, part.colours = FACE, np.asarray(visual.face_colors, dtype=np.uint8)
    return part


def load_parts(path: str | Path, max_faces: int) -> list[Part]:
    """Load ``path`` as world-space parts, or raise ObjectFailure with a reason."""
    try:
        scene = trimesh.load_scene(str(path), process=False)
    except Exception as exc:  # noqa: BLE001 - loaders raise anything from ValueError to KeyError
        invalid = file_index_problem(path)  # trimesh crashes on an OBJ face naming a missing vertex
        if invalid is not None:
            raise ObjectFailure("invalid_mesh", invalid) from exc
        raise ObjectFailure("unreadable", f"{type(exc).__name__}: {exc}") from exc
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geometry = scene.geometry.get(name)
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces) > 0:
            _check_shapes(geometry, name)
            parts.append(_part_from_mesh(geometry, transform))
    if not parts:
        kinds = sorted({type(g).__name__ for g in scene.geometry.values()}) or ["nothing"]
        raise ObjectFailure("empty", f"no triangle geometry in the scene (found: {', '.join(kinds)})")
    return check_parts(parts, max_faces)


def _check_shapes(mesh: trimesh.Trimesh, name: str) -> None:
    """``invalid_mesh`` unless the loader gave 3 coordinates per vertex and 3 corners per face: an OBJ
    whose vertex lines hold different counts of numbers loads as a (V, 1) or (V, 2) array."""
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ObjectFailure(
            "invalid_mesh",
            f"mesh {name!r}: the vertices came out as an array of shape {vertices.shape}, not (n, 3): "
            "are some vertex lines missing a coordinate?",
        )
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ObjectFailure("invalid_mesh", f"mesh {name!r}: the faces came out as an array of shape {faces.shape}")


def check_parts(parts: list[Part], max_faces: int) -> list[Part]:
    """The checks every reader's parts pass before sampling: the face limit, faces that name
    existing vertices, and finite coordinates (vertices, and texture coordinates where used)."""
    total_faces = sum(len(p.faces) for p in parts)
    if total_faces > max_faces:
        raise ObjectFailure("too_many_faces", f"{total_faces} triangles, over the limit of {max_faces}")
    for part in parts:
        check_face_indices(part)
        bad = ~np.isfinite(part.vertices).all(axis=1)
        if bad.any():
            raise ObjectFailure("non_finite", f"{int(bad.sum())} vertices with NaN or infinite coordinates")
        if part.colour_source == TEXTURE:
            bad = ~np.isfinite(part.uv).all(axis=1)
            if bad.any():
                raise ObjectFailure(
                    "non_finite", f"{int(bad.sum())} texture coordinates (UV) with NaN or infinite values"
                )
    return parts


def check_face_indices(part: Part) -> None:
    """``invalid_mesh`` unless every face index names one of the part's vertices (0-based).

    PLY and glTF loaders pass such indices through; sampling would crash on them or, for a
    negative index, silently take a vertex counted from the end.
    """
    if part.faces.size == 0:
        return
    count = len(part.vertices)
    low, high = int(part.faces.min()), int(part.faces.max())
    if low >= 0 and high < count:
        return
    outside = ((part.faces < 0) | (part.faces >= count)).any(axis=1)
    valid = f"indices 0 to {count - 1}" if count else "no index is valid"
    raise ObjectFailure(
        "invalid_mesh",
        f"faces reference vertex {high if high >= count else low} but the mesh has {count} vertices ({valid}); "
        f"{int(outside.sum())} of {len(part.faces)} faces name a vertex that does not exist",
    )
