"""Sources of 3D objects. Each yields SourceObjects: a uid, a file and maybe a category."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ulip2_pipeline.settings import DemoSource, FolderSource, ObjaverseSource, ShapeNetSource, SourceSettings


@dataclass(frozen=True)
class SourceObject:
    uid: str
    path: Path | str  # the mesh file (a string from the folder source, which lists millions)
    root: Path  # the folder the file must stay inside
    category: str | None = None
    bytes: int | None = None  # size and modification time, when the listing already has them
    mtime_ns: int | None = None
    checked: bool = False  # the source already made sure the uid is safe and the file inside root


class SourceError(ValueError):
    """The source as configured cannot be listed (missing folder, bad uid list, ...)."""


def list_objects(
    source: SourceSettings, demo_dir: str | Path | None = None
) -> tuple[list[SourceObject], list[tuple[str, str, str]]]:
    """List a configured source.

    Returns the objects and the uids that could not be had, as (uid, reason, detail)
    tuples (files linking outside a folder, unknown Objaverse uids, failed downloads).
    """
    if isinstance(source, FolderSource):
        from ulip2_pipeline.sources.folder import list_folder

        return list_folder(Path(source.path), list(source.extensions), source.category)
    if isinstance(source, DemoSource):
        from ulip2_pipeline.sources.folder import list_folder

        if demo_dir is None:
            raise SourceError("the demo source needs the folder the demo_meshes rule generated")
        return list_folder(Path(demo_dir), ["glb", "obj", "ply", "stl"], "parent_dir")
    if isinstance(source, ShapeNetSource):
        from ulip2_pipeline.sources.shapenet import list_shapenet

        return list_shapenet(Path(source.path), list(source.synsets)), []
    if isinstance(source, ObjaverseSource):
        from ulip2_pipeline.sources.objaverse_uids import list_objaverse

        return list_objaverse(source)
    raise SourceError(f"unknown source kind {source.kind!r}")
