"""Readers for the zero-shot benchmarks users download, and the demo set's held-out objects.

Every reader returns ``(clouds, labels, class_names)``: clouds as ``(xyz, rgb)`` float32 arrays of
shape (N, 3) with rgb in [0, 1]; labels as indices into ``class_names``; ``class_names`` spelt the way
the benchmark's publisher puts them into the prompt templates (``zeroshot.class_embeddings`` formats
them as given).

Points. A cloud keeps every stored point, in the file's order, unless it has more than
``num_points``: then its first ``num_points`` in farthest-point order from its first point are
kept (ULIP draws a random start, OpenShape a random subset; one fixed order keeps runs
comparable). The order of a cloud that is not subsampled matters: the encoder runs its own
farthest-point sampling from the first point it is given, as ULIP's does. Axes are left as
stored: OpenShape swaps y and z inside its loader for its own y-up models, which is the model's
convention, not the benchmark's. Normalising means: subtract the centroid, divide by the largest
distance from it (a cloud of one repeated point becomes all zeros, as in OpenShape), applied to
the points returned, i.e. after any subsampling, as both ULIP's ModelNet loader and OpenShape's
loaders do.

Formats (``eval.benchmarks`` entries: ``format``, ``path``, ``split``):

``modelnet40_ulip2``: ULIP-2's colored ModelNet40, as ULIP's ModelNet loader reads it with
    ``use_10k_pc`` and a colored model. Under ``path``: ``modelnet40_colored_10k_pc.npy`` (object
    array of dicts with ``xyz`` (10000, 3)), ``modelnet40_test_split_10k_colored.json`` (entry i's
    ``category`` is cloud i's shape name) and ``modelnet40_shape_names.txt`` (label = line
    index). xyz exactly as stored, not re-centred or re-scaled (ULIP does not); rgb 0.4 for every
    point (ULIP ignores any stored colour). Names: the shape names with "_" as " ", ULIP's
    ``labels.json`` ("flower pot", "night stand", ...).
``modelnet40_ulip``: ULIP(-1)'s ModelNet40. Under ``path``: ``modelnet40_test_8192pts_fps.dat``
    (pickle of [clouds (8192, 3 or 6), labels]) and ``modelnet40_shape_names.txt``. xyz normalised
    (ULIP's ``pc_normalize``); rgb 0.4 (ULIP's colored models); names as for ``modelnet40_ulip2``.
``openshape_modelnet40``: OpenShape's ModelNet40 (its ``meta_data/modelnet40`` folder as
    ``path``): ``test_split.json`` (``split`` overrides; entries with ``name`` and ``category``)
    and ``test_pc.npy`` (object array of dicts with ``xyz`` and ``rgb`` in 0..255). xyz
    normalised and rgb / 255, as OpenShape's ``ModelNet40Test``. Classes: OpenShape orders them
    by the keys of a precomputed CLIP-feature file; here the sorted categories, spelt with "_"
    as " ".
``openshape_lvis``: OpenShape's Objaverse-LVIS, ``path`` the folder OpenShape runs from. The
    split JSON (``split``, default ``meta_data/split/lvis.json``) lists entries with ``uid``,
    ``category``, ``group`` and ``data_path``, a ``.npy`` dict with ``xyz`` and ``rgb`` (already in
    [0, 1]); a relative ``data_path`` is resolved against ``path``. xyz normalised, rgb as stored,
    as OpenShape's ``ObjaverseLVIS`` (``normalize: True``). Classes: the sorted categories (the
    order OpenShape uses); OpenShape prompts with precomputed features, so the names here are
    the LVIS category strings with "_" as " ".
``openshape``: the earlier name of ``openshape_lvis`` (``split`` relative to ``path``), kept so
    existing configurations still run.
``ulip2_lvis``: ULIP-2's Objaverse-LVIS, ``path`` its ``objaverse-lvis`` folder: ``lvis.json``
    (``split`` overrides; sample id -> ``.npy`` dict path relative to ``path``) and
    ``objaverse_lvis_metadata.json`` (``all_keys``: the class list and prompt names, as-is;
    ``value_to_key_mapping``: sample -> class key; ``key_to_id``: class key -> label). xyz
    normalised (ULIP's ``pc_norm``), rgb as stored, in the order of ``lvis.json``.
``scanobjectnn``: the official ScanObjectNN h5 file (``split``, default
    ``main_split/test_objectdataset.h5``; datasets ``data`` (N, 2048, 3) and ``label`` (N,)). xyz
    normalised, rgb 0.4, OpenShape's 15 class names (as the ScanObjectNN label order).
``openshape_scanobjectnn``: OpenShape's ``xyz_label.npy`` (``split`` overrides; a dict with
    ``xyz`` (clouds), ``label`` and optional ``rgb`` in [0, 1]). xyz normalised, rgb as stored or
    0.4 without it, as OpenShape's ``ScanObjectNNTest``; the same 15 names.
``demo_heldout``: the dataset's held-out objects (``train.holdout_fraction``) from its triplet
    shards: the stored (already normalised, farthest-point ordered) points, rgb / 255, the sorted
    categories spelt with "_" as " ".

A missing file or a malformed entry raises a ValueError naming the file and what is wrong.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ulip2_pipeline.settings import BenchmarkSpec
from ulip2_pipeline.stages.points.sampling import farthest_point_order
from ulip2_pipeline.train.splits import holdout

GREY = 0.4
SCANOBJECTNN_CLASSES = [
    "bag",
    "bin",
    "box",
    "cabinet",
    "chair",
    "desk",
    "display",
    "door",
    "shelf",
    "table",
    "bed",
    "pillow",
    "sink",
    "sofa",
    "toilet",
]
SHAPE_NAMES = "modelnet40_shape_names.txt"
ULIP_DAT = "modelnet40_test_8192pts_fps.dat"
ULIP2_PC = "modelnet40_colored_10k_pc.npy"
ULIP2_SPLIT = "modelnet40_test_split_10k_colored.json"
OPENSHAPE_MODELNET_SPLIT = "test_split.json"
OPENSHAPE_MODELNET_PC = "test_pc.npy"
OPENSHAPE_LVIS_SPLIT = "meta_data/split/lvis.json"
ULIP2_LVIS_SPLIT = "lvis.json"
ULIP2_LVIS_METADATA = "objaverse_lvis_metadata.json"
SCANOBJECTNN_H5 = "main_split/test_objectdataset.h5"
OPENSHAPE_SCANOBJECTNN = "xyz_label.npy"


def spoken(name: str) -> str:
    """A class name as ULIP's labels.json spells it: "flower_pot" -> "flower pot"."""
    return name.replace("_", " ")


def normalise(xyz: np.ndarray) -> np.ndarray:
    """Centroid at 0, largest distance from it 1; a cloud of one repeated point becomes zeros."""
    centred = xyz.astype(np.float64) - xyz.astype(np.float64).mean(axis=0)
    radius = float(np.linalg.norm(centred, axis=1).max())
    return (np.zeros_like(centred) if radius < 1e-6 else centred / radius).astype(np.float32)


def subsample(xyz: np.ndarray, rgb: np.ndarray, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The cloud as given when it has at most ``num_points``, else its first ``num_points`` in
    farthest-point order."""
    if len(xyz) <= num_points:
        return xyz, rgb
    order = farthest_point_order(xyz)[:num_points]
    return xyz[order], rgb[order]


def _cloud(xyz, rgb, num_points: int, normalised: bool) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = subsample(xyz, rgb, num_points)
    return (normalise(xyz) if normalised else xyz), rgb


def _xyz(value, where: str) -> np.ndarray:
    """(N, 3) float32 from a stored (N, >=3) array; ``where`` names the file and entry for errors."""
    try:
        xyz = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: xyz is not a numeric array ({error})") from None
    if xyz.ndim != 2 or xyz.shape[1] < 3 or len(xyz) == 0:
        raise ValueError(f"{where}: xyz has shape {xyz.shape}, not (N, 3) with N > 0")
    if not np.isfinite(xyz[:, :3]).all():
        raise ValueError(f"{where}: xyz has non-finite values")
    return np.ascontiguousarray(xyz[:, :3])


def _rgb(value, count: int, where: str, scale: float = 1.0) -> np.ndarray:
    """(count, 3) float32 in [0, 1] from stored colours in [0, ``scale``]."""
    try:
        rgb = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: rgb is not a numeric array ({error})") from None
    if rgb.shape != (count, 3):
        raise ValueError(f"{where}: rgb has shape {rgb.shape}, not ({count}, 3)")
    if not (np.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= scale):
        raise ValueError(f"{where}: rgb is outside [0, {scale:g}]")
    return rgb / np.float32(scale) if scale != 1.0 else rgb


def _grey(xyz: np.ndarray) -> np.ndarray:
    return np.full(xyz.shape, GREY, dtype=np.float32)


def _file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    return path


def _json(path: Path, kind: type):
    try:
        value = json.loads(_file(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path.name} is not valid JSON: {error}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{path.name} holds a JSON {type(value).__name__}, not a {kind.__name__}")
    return value


def _npy(path: Path):
    try:
        return np.load(_file(path), allow_pickle=True)
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        raise ValueError(f"{path.name} is not a readable .npy file: {error}") from None


def _npy_dict(path: Path, keys: tuple[str, ...]) -> dict:
    """A .npy file holding one pickled dict with ``keys``."""
    data = _npy(path)
    data = data.item() if data.dtype == object and data.shape == () else data
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds a {type(data).__name__}, not a dict")
    missing = [key for key in keys if key not in data]
    if missing:
        raise ValueError(f"{path.name} has no {', '.join(missing)}")
    return data


def _npy_dicts(path: Path) -> list[dict]:
    """A .npy object array of dicts, each with ``xyz``."""
    data = _npy(path)
    if data.dtype != object or data.ndim != 1:
        raise ValueError(f"{path.name} holds an array of {data.dtype} and shape {data.shape}, not a list of dicts")
    for i, item in enumerate(data):
        if not (isinstance(item, dict) and "xyz" in item):
            raise ValueError(f"{path.name} entry {i} is not a dict with xyz")
    return list(data)


def _fields(entry, fields: tuple[str, ...], where: str) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"{where} is a {type(entry).__name__}, not an object")
    missing = [field for field in fields if field not in entry]
    if missing:
        raise ValueError(f"{where} has no {', '.join(missing)}")


def _shape_names(root: Path) -> list[str]:
    names = [line.strip() for line in _file(root / SHAPE_NAMES).read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError(f"{SHAPE_NAMES} lists no shape names")
    return names


def _same_count(what: str, count: int, clouds_file: str, clouds: int) -> None:
    if count != clouds:
        raise ValueError(f"{what} has {count} entries for {clouds} clouds in {clouds_file}")


def read_demo_heldout(triplet_paths, fraction: float, num_points: int):
    clouds, names = [], []
    for path in triplet_paths:
        table = pq.read_table(path, columns=["uid", "category", "xyz", "rgb"])
        for row in table.to_pylist():
            if row["category"] and holdout(row["uid"], fraction):
                clouds.append(
                    (
                        np.asarray(row["xyz"][:num_points], np.float32),
                        np.asarray(row["rgb"][:num_points], np.float32) / 255.0,
                    )
                )
                names.append(row["category"])
    classes = sorted(set(names))
    return clouds, [classes.index(n) for n in names], [spoken(c) for c in classes]


def read_modelnet40_ulip(root, num_points: int):
    """ULIP's modelnet40_test_8192pts_fps.dat and modelnet40_shape_names.txt: normalised, grey."""
    root = Path(root)
    shape_names = _shape_names(root)
    path = _file(root / ULIP_DAT)
    try:
        with open(path, "rb") as f:
            stored = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as error:
        raise ValueError(f"{ULIP_DAT} is not a readable pickle: {error}") from None
    if not (isinstance(stored, (list, tuple)) and len(stored) == 2):
        raise ValueError(f"{ULIP_DAT} does not hold [clouds, labels]")
    points, stored_labels = stored
    _same_count(f"{ULIP_DAT}'s label list", len(stored_labels), ULIP_DAT, len(points))
    clouds, labels = [], []
    for i, (cloud, label) in enumerate(zip(points, stored_labels)):
        xyz = _xyz(cloud, f"{ULIP_DAT} cloud {i}")
        label = np.asarray(label).reshape(-1)
        if label.size != 1 or not 0 <= int(label[0]) < len(shape_names):
            raise ValueError(f"{ULIP_DAT} cloud {i}: label {label.tolist()} is not an index into {SHAPE_NAMES}")
        clouds.append(_cloud(xyz, _grey(xyz), num_points, normalised=True))
        labels.append(int(label[0]))
    return clouds, labels, [spoken(n) for n in shape_names]


def read_modelnet40_ulip2(root, num_points: int):
    """ULIP-2's colored 10k ModelNet40: xyz as stored, grey."""
    root = Path(root)
    shape_names = _shape_names(root)
    split = _json(root / ULIP2_SPLIT, list)
    stored = _npy_dicts(root / ULIP2_PC)
    _same_count(ULIP2_SPLIT, len(split), ULIP2_PC, len(stored))
    clouds, labels = [], []
    for i, (entry, data) in enumerate(zip(split, stored)):
        _fields(entry, ("category",), f"{ULIP2_SPLIT} entry {i}")
        if entry["category"] not in shape_names:
            raise ValueError(f"{ULIP2_SPLIT} entry {i}: category {entry['category']!r} is not in {SHAPE_NAMES}")
        xyz = _xyz(data["xyz"], f"{ULIP2_PC} entry {i}")
        clouds.append(_cloud(xyz, _grey(xyz), num_points, normalised=False))
        labels.append(shape_names.index(entry["category"]))
    return clouds, labels, [spoken(n) for n in shape_names]


def read_openshape_modelnet40(root, num_points: int, split: str = OPENSHAPE_MODELNET_SPLIT):
    """OpenShape's test_split.json and test_pc.npy: normalised, rgb / 255."""
    root = Path(root)
    split_path = root / split
    entries = _json(split_path, list)
    stored = _npy_dicts(root / OPENSHAPE_MODELNET_PC)
    _same_count(split_path.name, len(entries), OPENSHAPE_MODELNET_PC, len(stored))
    for i, entry in enumerate(entries):
        _fields(entry, ("category",), f"{split_path.name} entry {i}")
    classes = sorted({entry["category"] for entry in entries})
    clouds, labels = [], []
    for i, (entry, data) in enumerate(zip(entries, stored)):
        where = f"{OPENSHAPE_MODELNET_PC} entry {i}"
        if "rgb" not in data:
            raise ValueError(f"{where} has no rgb")
        xyz = _xyz(data["xyz"], where)
        clouds.append(_cloud(xyz, _rgb(data["rgb"], len(xyz), where, scale=255.0), num_points, normalised=True))
        labels.append(classes.index(entry["category"]))
    return clouds, labels, [spoken(c) for c in classes]


def read_openshape_lvis(root, num_points: int, split: str = OPENSHAPE_LVIS_SPLIT):
    """OpenShape's split JSON of per-object .npy dicts (Objaverse-LVIS): normalised, rgb as stored."""
    root = Path(root)
    split_path = root / split
    entries = _json(split_path, list)
    for i, entry in enumerate(entries):
        _fields(entry, ("category", "data_path"), f"{split_path.name} entry {i}")
    classes = sorted({entry["category"] for entry in entries})
    clouds, labels = [], []
    for entry in entries:
        path = root / entry["data_path"]  # an absolute data_path stays as it is
        data = _npy_dict(path, ("xyz", "rgb"))
        xyz = _xyz(data["xyz"], path.name)
        clouds.append(_cloud(xyz, _rgb(data["rgb"], len(xyz), path.name), num_points, normalised=True))
        labels.append(classes.index(entry["category"]))
    return clouds, labels, [spoken(c) for c in classes]


def read_ulip2_lvis(root, num_points: int, split: str = ULIP2_LVIS_SPLIT):
    """ULIP-2's lvis.json and objaverse_lvis_metadata.json: normalised, rgb as stored."""
    root = Path(root)
    split_path = root / split
    files = _json(split_path, dict)
    metadata = _json(root / ULIP2_LVIS_METADATA, dict)
    _fields(metadata, ("all_keys", "value_to_key_mapping", "key_to_id"), ULIP2_LVIS_METADATA)
    classes, sample_keys, key_ids = metadata["all_keys"], metadata["value_to_key_mapping"], metadata["key_to_id"]
    clouds, labels = [], []
    for sample, relative in files.items():
        if sample not in sample_keys:
            raise ValueError(
                f"{split_path.name}: sample {sample!r} is not in {ULIP2_LVIS_METADATA}'s value_to_key_mapping"
            )
        key = sample_keys[sample]
        label = key_ids.get(key)
        if not (isinstance(label, int) and 0 <= label < len(classes) and classes[label] == key):
            raise ValueError(
                f"{ULIP2_LVIS_METADATA}: class {key!r} of sample {sample!r} has key_to_id {label!r}, "
                "not its index in all_keys"
            )
        path = root / relative
        data = _npy_dict(path, ("xyz", "rgb"))
        xyz = _xyz(data["xyz"], path.name)
        clouds.append(_cloud(xyz, _rgb(data["rgb"], len(xyz), path.name), num_points, normalised=True))
        labels.append(label)
    return clouds, labels, list(classes)


def _scanobjectnn_label(label, where: str) -> int:
    if not (float(label).is_integer() and 0 <= int(label) < len(SCANOBJECTNN_CLASSES)):
        raise ValueError(f"{where}: label {label} is not one of the {len(SCANOBJECTNN_CLASSES)} ScanObjectNN classes")
    return int(label)


def read_scanobjectnn(root, num_points: int, split: str = SCANOBJECTNN_H5):
    """The official ScanObjectNN h5 file: datasets "data" (N, 2048, 3) and "label" (N,); normalised, grey."""
    import h5py

    path = _file(Path(root) / split)
    try:
        with h5py.File(path, "r") as f:
            data, stored_labels = f["data"][:], f["label"][:].reshape(-1)
    except (OSError, KeyError) as error:
        raise ValueError(f"{path.name} is not a ScanObjectNN h5 file with data and label: {error}") from None
    _same_count(f"{path.name}'s label", len(stored_labels), path.name, len(data))
    clouds, labels = [], []
    for i, (points, label) in enumerate(zip(data, stored_labels)):
        xyz = _xyz(points, f"{path.name} cloud {i}")
        clouds.append(_cloud(xyz, _grey(xyz), num_points, normalised=True))
        labels.append(_scanobjectnn_label(label, f"{path.name} cloud {i}"))
    return clouds, labels, list(SCANOBJECTNN_CLASSES)


def read_openshape_scanobjectnn(root, num_points: int, split: str = OPENSHAPE_SCANOBJECTNN):
    """OpenShape's xyz_label.npy: a dict of xyz, label and optional rgb; normalised, rgb as stored or grey."""
    path = Path(root) / split
    data = _npy_dict(path, ("xyz", "label"))
    stored_labels = np.asarray(data["label"]).reshape(-1)
    _same_count(f"{path.name}'s label", len(stored_labels), path.name, len(data["xyz"]))
    if "rgb" in data:
        _same_count(f"{path.name}'s rgb", len(data["rgb"]), path.name, len(data["xyz"]))
    clouds, labels = [], []
    for i, (points, label) in enumerate(zip(data["xyz"], stored_labels)):
        where = f"{path.name} cloud {i}"
        xyz = _xyz(points, where)
        rgb = _rgb(data["rgb"][i], len(xyz), where) if "rgb" in data else _grey(xyz)
        clouds.append(_cloud(xyz, rgb, num_points, normalised=True))
        labels.append(_scanobjectnn_label(label, where))
    return clouds, labels, list(SCANOBJECTNN_CLASSES)


# format -> (reader of (root, num_points, split), default split or None where there is none)
READERS = {
    "modelnet40_ulip": (lambda root, n, split: read_modelnet40_ulip(root, n), None),
    "modelnet40_ulip2": (lambda root, n, split: read_modelnet40_ulip2(root, n), None),
    "openshape_modelnet40": (read_openshape_modelnet40, OPENSHAPE_MODELNET_SPLIT),
    "openshape_lvis": (read_openshape_lvis, OPENSHAPE_LVIS_SPLIT),
    "openshape": (read_openshape_lvis, OPENSHAPE_LVIS_SPLIT),
    "ulip2_lvis": (read_ulip2_lvis, ULIP2_LVIS_SPLIT),
    "scanobjectnn": (read_scanobjectnn, SCANOBJECTNN_H5),
    "openshape_scanobjectnn": (read_openshape_scanobjectnn, OPENSHAPE_SCANOBJECTNN),
}
FORMATS = ("demo_heldout", *READERS)


def read_benchmark(spec: BenchmarkSpec, num_points: int, triplet_paths=None, holdout_fraction: float = 0.0):
    """``(clouds, labels, class_names)`` of one ``eval.benchmarks`` entry (see the module docstring)."""
    kind = spec["format"]
    if kind == "demo_heldout":
        return read_demo_heldout(triplet_paths, holdout_fraction, num_points)
    if kind not in READERS:
        raise ValueError(f"unknown benchmark format {kind!r} (one of {', '.join(FORMATS)})")
    if not spec.get("path"):
        raise ValueError(f"benchmark {spec.get('name', kind)!r}: format {kind} needs a path")
    reader, default_split = READERS[kind]
    return reader(spec["path"], num_points, spec.get("split") or default_split)
