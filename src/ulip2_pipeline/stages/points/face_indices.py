"""Which face of an OBJ or OFF file refers to a vertex the file does not have.

Read only after trimesh failed on the file: trimesh's OBJ loader crashes on such a face
(an IndexError with no context) and its OFF loader says only that some index is out of
range. A face found here makes the object ``invalid_mesh`` with the face's line, its
index and the vertex count, which a person can act on. (Formats whose loaders accept
such faces, such as PLY and glTF, are caught on the loaded parts: ``meshes.check_parts``.)
"""

from __future__ import annotations

from pathlib import Path


def file_index_problem(path: str | Path) -> str | None:
    """A face of ``path`` (.obj or .off) referring to a vertex that does not exist, described; else None."""
    path = Path(path)
    scan = {".obj": _obj, ".off": _off}.get(path.suffix.lower())
    if scan is None:
        return None
    try:
        return scan(path)
    except (OSError, ValueError, IndexError, StopIteration):
        return None  # not a file this can read, or cut short: the loader's error stands


def _obj(path: Path) -> str | None:
    """OBJ indices are 1-based; a negative index counts back from the last vertex defined before the face."""
    vertices, largest = 0, None  # largest: (index, line number) of the highest positive index
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if line.startswith((b"v ", b"v\t")):
                vertices += 1
            elif line.startswith((b"f ", b"f\t")):
                for corner in line.split(b"#", 1)[0].split()[1:]:
                    index = int(corner.split(b"/", 1)[0])
                    if index == 0:
                        return f"the face on line {number} references vertex 0; OBJ vertex indices start at 1"
                    if index < 0 and -index > vertices:
                        return (
                            f"the face on line {number} references vertex {index} (counting back from the last), "
                            f"but only {vertices} vertices are defined before it"
                        )
                    if largest is None or index > largest[0]:
                        largest = (index, number)
    if largest is not None and largest[0] > vertices:
        index, number = largest
        return (
            f"faces reference vertex {index} (first on line {number}) but the file has {vertices} vertices "
            "(OBJ indices start at 1)"
        )
    return None


def _off(path: Path) -> str | None:
    """OFF: a header ([C|N|ST...]OFF, then vertex, face and edge counts), one vertex a line, then
    one face a line: its corner count, then that many 0-based vertex indices (then, maybe, a colour)."""
    with open(path, "rb") as f:
        lines = (line.split(b"#", 1)[0].split() for line in f)
        lines = (words for words in lines if words)
        words = next(lines)
        if not words[0].endswith(b"OFF") or words[0][:1] in (b"n", b"4") or b"BINARY" in words[1:2]:
            return None
        counts = words[1:]
        while len(counts) < 3:
            counts += next(lines)
        vertices, faces = int(counts[0]), int(counts[1])
        for _ in range(vertices):
            next(lines)
        for face in range(faces):
            words = next(lines, None)
            if words is None:
                return None
            corners = [int(word) for word in words[1 : 1 + int(words[0])]]
            bad = [index for index in corners if not 0 <= index < vertices]
            if bad:
                valid = f"indices 0 to {vertices - 1}" if vertices else "no index is valid"
                return f"face {face} references vertex {bad[0]} but the file has {vertices} vertices ({valid})"
    return None
