"""A folder of mesh files, any format trimesh or Blender reads.

A file's uid is its path relative to the root, extension included, with '/' written
as '__': ``racecar/meshes/cone.dae`` is ``racecar__meshes__cone.dae``. Keeping the
extension tells same-stem files apart (``duck.dae`` and ``duck.obj``). A path that
cannot be written that way reversibly (characters outside letters, digits, '.', '_'
and '-', a '__' or '..' inside a name, a name starting with another character, more
than 200 characters, a name that starts or ends with '_', which could merge with a
separator) has the offending characters mapped to '_' and a hash of the
original path appended (``my duck.obj`` is ``my_duck.obj-3b1f...``, 16 hex digits), so
two files never share a uid and a uid never changes while its file keeps its path.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ulip2_pipeline.sources import SourceError, SourceObject

UID_SEPARATOR = "__"
MAX_UID = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REPEATED_DOT = re.compile(r"(?<=\.)\.")


def folder_uid(rel_parts: tuple[str, ...]) -> str:
    """The uid of a file from its path parts relative to the root (see the module docstring)."""
    plain = UID_SEPARATOR.join(rel_parts)
    # Reversible: safe characters, and no name whose '_' could merge with a separator.
    reversible = (
        len(plain) <= MAX_UID
        and _SAFE.fullmatch(plain) is not None
        and ".." not in plain
        and all(part and part[0] != "_" and part[-1] != "_" and UID_SEPARATOR not in part for part in rel_parts)
    )
    if reversible:
        return plain
    # The name's bytes as the file system holds them: a name that is not UTF-8 arrives with surrogate escapes.
    tag = hashlib.sha256("/".join(rel_parts).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    mapped = _REPEATED_DOT.sub("_", _UNSAFE.sub("_", plain))
    if not mapped[0].isalnum():
        mapped = "u" + mapped
    return f"{mapped[: MAX_UID - 17]}-{tag}"


def _walk(root: str):
    """(relative parts, DirEntry) of every file under ``root``; symlinked folders are not entered."""
    stack = [((), root)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                parts = prefix + (entry.name,)
                if entry.is_dir(follow_symlinks=False):
                    stack.append((parts, entry.path))
                else:
                    yield parts, entry


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def list_folder(
    root: Path, extensions: list[str], category: str
) -> tuple[list[SourceObject], list[tuple[str, str, str]]]:
    """The mesh files under ``root``, and the ones that cannot be admitted as (uid, reason, detail).

    Built for a million files: paths stay strings and each file costs one stat.
    """
    if not root.is_dir():
        raise SourceError(f"mesh folder {root} does not exist or is not a folder")
    wanted = {e.lower().lstrip(".") for e in extensions}
    resolved_root = root.resolve()
    objects, rejected = [], []
    for parts, entry in _walk(str(root)):
        suffix = entry.name.rpartition(".")[2].lower()
        if suffix not in wanted or "." not in entry.name:
            continue
        uid = folder_uid(parts)
        if not _is_utf8(entry.path):  # Parquet strings are UTF-8: the manifest could not record its path
            printable = os.fsencode(entry.path).decode("utf-8", "backslashreplace")
            rejected.append((uid, "non_utf8_name", f"{printable}: the file name is not UTF-8; rename the file"))
            continue
        try:
            if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(resolved_root):
                rejected.append(
                    (
                        uid,
                        "outside_root",
                        f"{entry.path} is a link to {Path(entry.path).resolve()}, "
                        f"outside the dataset root {root}; copy the file into the root to use it",
                    )
                )
                continue
            stat = entry.stat()
        except OSError as exc:
            rejected.append((uid, "unreadable_file", f"{entry.path}: {exc}"))
            continue
        if not entry.is_file():
            continue
        cat = parts[-2] if category == "parent_dir" and len(parts) > 1 else None
        objects.append(SourceObject(uid, entry.path, root, cat, stat.st_size, stat.st_mtime_ns, True))
    objects.sort(key=lambda o: o.uid)
    return objects, rejected
