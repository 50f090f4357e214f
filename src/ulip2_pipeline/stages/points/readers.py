"""Which reader turns a file into triangle parts: trimesh, or the scene Blender imports.

trimesh is the fast path. Blender reads what trimesh cannot (.blend, fbx, usd, abc)
or reads wrongly (Draco-compressed glTF, which trimesh returns as zero-area garbage),
and is the second chance for a file trimesh fails on in a format Blender imports.
Before either loads anything, a glTF of a version neither reads (1.0) is turned away
as ``unsupported_format``, and a face count from the file's header turns away meshes
over the limit.
"""

from __future__ import annotations

from pathlib import Path

from ulip2_pipeline.failures import ObjectFailure
from ulip2_pipeline.stages.points.face_count import declared_faces, gltf_version_problem, uses_draco
from ulip2_pipeline.stages.points.meshes import Part, load_parts

TRIMESH, BLENDER = "trimesh", "blender"
BLENDER_ONLY = {"fbx", "blend", "usd", "usda", "usdc", "usdz", "abc"}
BLENDER_IMPORTS = BLENDER_ONLY | {"glb", "gltf", "obj", "ply", "stl"}  # Blender's own importers (no trimesh inside)
FALLBACK_REASONS = {"unreadable", "empty"}


def extension(path: str | Path) -> str:
    return Path(path).suffix.lower().lstrip(".")


def first_reader(path: str | Path) -> str:
    return BLENDER if extension(path) in BLENDER_ONLY or uses_draco(path) else TRIMESH


def check_declared_faces(path: str | Path, max_faces: int) -> None:
    declared = declared_faces(path)
    if declared is not None and declared > max_faces:
        raise ObjectFailure(
            "too_many_faces",
            f"the file declares at least {declared} triangles, over the limit of {max_faces}; not loaded",
        )


def read_parts(path: str | Path, max_faces: int, up_axis: str) -> tuple[list[Part], str]:
    """The file's triangle parts in its own frame and the reader that produced them, or ObjectFailure."""
    path = Path(path)
    unsupported = gltf_version_problem(path)
    if unsupported is not None:
        raise ObjectFailure("unsupported_format", unsupported)
    check_declared_faces(path, max_faces)
    if first_reader(path) == BLENDER:
        return _blender(path, max_faces, up_axis), BLENDER
    try:
        return load_parts(path, max_faces), TRIMESH
    except ObjectFailure as failure:
        if failure.reason not in FALLBACK_REASONS or extension(path) not in BLENDER_IMPORTS:
            raise
        trimesh_said = f"trimesh: {failure.reason}: {failure.detail}"
    try:
        return _blender(path, max_faces, up_axis), BLENDER
    except ObjectFailure as second:
        raise ObjectFailure(second.reason, f"{second.detail} (and before it {trimesh_said})") from None


def _blender(path: Path, max_faces: int, up_axis: str) -> list[Part]:
    from ulip2_pipeline.stages.render import (
        blender_mesh,  # loads Blender (bpy) on first use: only workers that need it pay
    )

    return blender_mesh.read_parts(path, up_axis, max_faces)
