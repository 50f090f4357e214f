"""A folder of mesh files, any format trimesh or Blender reads."""
from __future__ import annotations

from pathlib import Path

from . import SourceError, SourceObject

UID_SEPARATOR = "__"


def list_folder(root: Path, extensions: list[str], category: str) -> list[SourceObject]:
    if not root.is_dir():
        raise SourceError(f"mesh folder {root} does not exist or is not a folder")
    wanted = {e.lower().lstrip(".") for e in extensions}
    objects = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower().lstrip(".") not in wanted:
            continue
        rel = path.relative_to(root)
        uid = UID_SEPARATOR.join(rel.with_suffix("").parts)
        cat = rel.parent.name if category == "parent_dir" and len(rel.parts) > 1 else None
        objects.append(SourceObject(uid=uid, path=path, root=root, category=cat))
    return objects
