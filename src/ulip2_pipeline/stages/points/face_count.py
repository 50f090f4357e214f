"""How many triangles a mesh file holds, read from its header or structure without loading it.

The face limit must act before a huge mesh is loaded (loading is what exhausts memory).
Each count here is a lower bound of the triangles a loader would produce (a polygon
gives at least one triangle), so a file over the limit by its count is over it for
certain. Formats whose count is not cheap to find give None; the loaded mesh is
checked instead.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path

CHUNK = 1 << 22
GLB_MAGIC = b"glTF"
GLB_JSON_CHUNK = 0x4E4F534A
# A .glb's header: magic, container version, length. Version 2 (glTF 2.0) then has chunks of (length, type,
# data), the first the JSON. Version 1 (glTF 1.0's KHR_binary_glTF) has contentLength and contentFormat, then
# the JSON: its document is never read here (neither loader reads 1.0; gltf_version_problem names it).
TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN = 4, 5, 6


def declared_faces(path: str | Path) -> int | None:
    """A lower bound on the file's triangles, or None where it cannot be had cheaply."""
    path = Path(path)
    reader = {"ply": _ply, "stl": _stl, "off": _off, "obj": _obj, "glb": _gltf, "gltf": _gltf}.get(
        path.suffix.lower().lstrip(".")
    )
    if reader is None:
        return None
    try:
        return reader(path)
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, struct.error):
        return None  # a malformed header or structure is the loader's to report


def gltf_document(path: str | Path) -> dict | None:
    """The JSON object of a .glb (its first chunk) or .gltf file.

    None if it is not one, or its JSON does not parse to an object: that is the loader's to report.
    """
    stat = Path(path).stat()
    return _gltf_document(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)  # the version check, the face count and the Draco check read the same document
def _gltf_document(path: str, size: int, mtime_ns: int) -> dict | None:
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(20)
        if head[:4] == GLB_MAGIC:
            length, kind = struct.unpack("<II", head[12:20])
            if kind != GLB_JSON_CHUNK:
                return None
            text = f.read(length)
        elif path.suffix.lower() == ".gltf":
            text = head + f.read()
        else:
            return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError), or nested too deep
        return None
    return document if isinstance(document, dict) else None


def glb_version(path: str | Path) -> int | None:
    """The container version of a binary glTF (1 for glTF 1.0's, 2 for glTF 2.0's), or None if it is not one."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[:4] != GLB_MAGIC:
        return None
    return struct.unpack("<I", head[4:8])[0]


GLTF_PIPELINE = (
    "trimesh and Blender read only glTF 2.0: convert it to glTF 2.0, e.g. with gltf-pipeline "
    "(`npx gltf-pipeline -i {name} -o {stem}-2.0{suffix}` upgrades a 1.0 file)"
)


def gltf_version_problem(path: str | Path) -> str | None:
    """Why ``path`` is a glTF of a version no reader here reads (1.0, or another major than 2), or None.

    glTF 1.0 keys its top-level collections by name (``"meshes": {"name": {...}}``) where 2.0
    has lists; trimesh ("only GLTF 2 is supported") and Blender's importer ("GLB version must
    be 2", or a crash on the dicts) read only 2.0. A file this cannot tell is left to the loader.
    """
    path = Path(path)
    if path.suffix.lower() not in (".glb", ".gltf"):
        return None
    try:
        container = glb_version(path)
        document = gltf_document(path)
    except (OSError, ValueError, struct.error):
        return None
    convert = GLTF_PIPELINE.format(name=path.name, stem=path.stem, suffix=path.suffix)
    if container == 1:
        return f"glTF 1.0 (a binary glTF container of version 1, KHR_binary_glTF); {convert}"
    if document is None:
        return None
    asset = document.get("asset")
    version = asset.get("version") if isinstance(asset, dict) else None
    if version is None:
        if isinstance(document.get("meshes"), dict):
            return f"glTF 1.0 (no asset.version, and its meshes are keyed by name as in glTF 1.0); {convert}"
        return None
    major = str(version).split(".")[0].strip()
    if major == "2":
        return None
    if major == "1":
        return f"glTF 1.0 (asset.version {version}); {convert}"
    return f"glTF {version} (asset.version {version}); trimesh and Blender read only glTF 2.0"


def uses_draco(path: str | Path) -> bool:
    """True for glTF files with Draco-compressed meshes, which trimesh reads as garbage."""
    try:
        document = gltf_document(path)
    except (OSError, ValueError, struct.error):
        return False
    used = document.get("extensionsUsed") if document else None
    return isinstance(used, list) and "KHR_draco_mesh_compression" in used


def _gltf(path: Path) -> int | None:
    document = gltf_document(path)
    if document is None:
        return None
    accessors, meshes, nodes = document.get("accessors", []), document.get("meshes", []), document.get("nodes", [])
    per_mesh = []
    for mesh in meshes:
        total = 0
        for primitive in mesh.get("primitives", []):
            mode = primitive.get("mode", TRIANGLES)
            index = primitive.get("indices", primitive.get("attributes", {}).get("POSITION"))
            if index is None:
                continue
            count = int(accessors[index]["count"])
            if mode == TRIANGLES:
                total += count // 3
            elif mode in (TRIANGLE_STRIP, TRIANGLE_FAN):
                total += max(0, count - 2)
        per_mesh.append(total)
    # Loaders flatten the scene: a mesh counts once for every node that instances it.
    scenes = document.get("scenes", [])
    scene = scenes[document.get("scene", 0)] if scenes else None
    stack = list(scene.get("nodes", [])) if scene else list(range(len(nodes)))
    total, seen = 0, 0
    while stack:
        node = nodes[stack.pop()]
        seen += 1
        if seen > 10 * len(nodes) + 10:
            return None  # a cycle: not a valid glTF, let the loader say so
        if "mesh" in node:
            total += per_mesh[node["mesh"]]
        stack.extend(node.get("children", []))
    return total


def _header_lines(path: Path, limit: int = 1 << 16) -> list[str]:
    with open(path, "rb") as f:
        return f.read(limit).decode("latin-1").splitlines()


def _ply(path: Path) -> int | None:
    lines = _header_lines(path)
    if not lines or lines[0].strip() != "ply":
        return None
    for line in lines[1:]:
        words = line.split()
        if words[:2] == ["element", "face"]:
            return int(words[2])
        if words[:1] == ["end_header"]:
            return 0
    return None


def _stl(path: Path) -> int | None:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(84)
    if len(head) < 84:
        return None
    declared = struct.unpack("<I", head[80:84])[0]
    if head[:5].lower() == b"solid" and size != 84 + 50 * declared:
        return _count_bytes(path, (b"endfacet",))  # ASCII STL
    return declared


def _off(path: Path) -> int | None:
    words = []
    for line in _header_lines(path, 4096):
        words += line.split("#", 1)[0].split()
        if len(words) >= 4:
            break
    # OFF, COFF, NOFF, STOFF, ...: "vertices faces edges" follow; nOFF/4OFF (other dimensions) are left alone.
    if not words or not words[0].endswith("OFF") or words[0][0] in "n4" or len(words) < 3:
        return None
    return int(words[2])


def _obj(path: Path) -> int:
    # A face line starts with "f" and a blank; the file's first line counts as if after a newline.
    return _count_bytes(path, (b"\nf ", b"\nf\t"), first=b"\n")


def _count_bytes(path: Path, tokens: tuple[bytes, ...], first: bytes = b"") -> int:
    """Occurrences of ``tokens`` in the file, streaming. Each block is searched with the previous
    block's last len(token) - 1 bytes in front: a token across the seam is found once, none twice."""
    keep = max(len(t) for t in tokens) - 1
    total, tail = 0, first
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            data = tail + block
            total += sum(data.count(t) for t in tokens)
            tail = data[-keep:]
    return total
