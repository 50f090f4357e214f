"""A folder of mesh files, any format trimesh or Blender reads.

A file's uid is its path relative to the root, extension included, with '/' written
as '__': ``racecar/meshes/cone.dae`` is ``racecar__meshes__cone.dae``. Keeping the
extension tells same-stem files apart (``duck.dae`` and ``duck.obj``). A path that
cannot be written that way reversibly (characters outside letters, digits, '.', '_'
and '-', a '__' or '..' inside a name, a name starting with another character, more
than 200 characters) has the offending characters mapped to '_' and a hash of the
original path appended (``my duck.obj`` is ``my_duck.obj-3b1f...``, 16 hex digits), so
two files never share a uid and a uid never changes while its file keeps its path.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from . import SourceError, SourceObject

UID_SEPARATOR = "__"
MAX_UID = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def folder_uid(rel_parts: tuple[str, ...]) -> str:
    """The uid of a file from its path parts relative to the root (see the module docstring)."""
    plain = UID_SEPARATOR.join(rel_parts)
    reversible = (all(part and UID_SEPARATOR not in part and ".." not in part and not _UNSAFE.search(part)
                      for part in rel_parts)
                  and plain[0].isalnum() and len(plain) <= MAX_UID)
    if reversible:
        return plain
    tag = hashlib.sha256("/".join(rel_parts).encode()).hexdigest()[:16]
    mapped = _UNSAFE.sub("_", plain).replace("..", "_.")
    if not mapped[0].isalnum():
        mapped = "u" + mapped
    return f"{mapped[:MAX_UID - 17]}-{tag}"


def _walk(root: Path):
    """(relative parts, DirEntry) of every file under ``root``; symlinked folders are not entered."""
    stack = [((), root)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                parts = prefix + (entry.name,)
                if entry.is_dir(follow_symlinks=False):
                    stack.append((parts, Path(entry.path)))
                else:
                    yield parts, entry


def list_folder(root: Path, extensions: list[str], category: str) -> tuple[list[SourceObject], list[tuple[str, str, str]]]:
    """The mesh files under ``root``, and the ones that cannot be admitted as (uid, reason, detail)."""
    if not root.is_dir():
        raise SourceError(f"mesh folder {root} does not exist or is not a folder")
    wanted = {e.lower().lstrip(".") for e in extensions}
    resolved_root = root.resolve()
    objects, rejected = [], []
    for parts, entry in _walk(root):
        suffix = os.path.splitext(entry.name)[1].lower().lstrip(".")
        if suffix not in wanted:
            continue
        uid = folder_uid(parts)
        path = Path(entry.path)
        try:
            if entry.is_symlink() and not path.resolve().is_relative_to(resolved_root):
                rejected.append((uid, "outside_root", f"{path} is a link to {path.resolve()}, outside the dataset "
                                 f"root {root}; copy the file into the root to use it"))
                continue
            stat = entry.stat()
        except OSError as exc:
            rejected.append((uid, "unreadable_file", f"{path}: {exc}"))
            continue
        if not entry.is_file():
            continue
        cat = parts[-2] if category == "parent_dir" and len(parts) > 1 else None
        objects.append(SourceObject(uid=uid, path=path, root=root, category=cat, bytes=stat.st_size,
                                    mtime_ns=stat.st_mtime_ns, checked=True))
    objects.sort(key=lambda o: o.uid)
    return objects, rejected
