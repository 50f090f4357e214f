"""Zero-shot benchmark readers on tiny files in each publisher's layout, and ULIP's prompt templates."""

import json
import pickle

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import REPO

from ulip2_pipeline.stages.points.sampling import farthest_point_order
from ulip2_pipeline.train.benchmarks import FORMATS, SCANOBJECTNN_CLASSES, read_benchmark
from ulip2_pipeline.train.zeroshot import TEMPLATES, class_embeddings


def cloud(seed: int, count: int = 40, offset: float = 3.0, scale: float = 5.0) -> np.ndarray:
    """Off-centre, unscaled float32 points, so normalisation visibly changes them."""
    return (np.random.default_rng(seed).normal(size=(count, 3)) * scale + offset).astype(np.float32)


def unit_sphere(xyz: np.ndarray) -> np.ndarray:
    centred = xyz.astype(np.float64) - xyz.astype(np.float64).mean(axis=0)
    return centred / np.linalg.norm(centred, axis=1).max()


def assert_normalised(xyz: np.ndarray) -> None:
    np.testing.assert_allclose(xyz.mean(axis=0), 0.0, atol=1e-5)
    assert np.linalg.norm(xyz, axis=1).max() == pytest.approx(1.0, abs=1e-5)


def save_object_array(path, items) -> None:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    np.save(path, array, allow_pickle=True)


def assert_clouds_are_float32(clouds) -> None:
    for xyz, rgb in clouds:
        assert xyz.dtype == rgb.dtype == np.float32
        assert xyz.shape == rgb.shape


# --- prompts ---------------------------------------------------------------------------------------


def test_templates_are_ulips_modelnet40_64_list():
    assert len(TEMPLATES) == 64
    assert len(set(TEMPLATES)) == 64
    # ULIP's data/templates.json has no period on this one entry; the list is used as published.
    assert TEMPLATES[50:52] == ["a black and white photo of the {}.", "a black and white photo of a {}"]
    assert TEMPLATES[0] == "a point cloud model of {}."
    assert TEMPLATES[-1] == "a painting of a {}."


def test_class_embeddings_format_the_names_as_given():
    seen = []

    def encode(texts):
        seen.extend(texts)
        return torch.ones(len(texts), 4)

    class_embeddings(encode, ["flower_pot", "sun hat"], templates=["a {}."])
    assert seen == ["a flower_pot.", "a sun hat."]


# --- ULIP-2 ModelNet40 (colored 10k) -------------------------------------------------------------


def write_modelnet40_ulip2(root, categories, names=("airplane", "bathtub", "flower_pot"), count=40):
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("".join(f"{n}\n" for n in names))
    stored = [cloud(i, count) for i in range(len(categories))]
    rgb = [np.random.default_rng(9).random((count, 3)).astype(np.float32) for _ in categories]
    save_object_array(root / "modelnet40_colored_10k_pc.npy", [{"xyz": x, "rgb": c} for x, c in zip(stored, rgb)])
    (root / "modelnet40_test_split_10k_colored.json").write_text(json.dumps([{"category": c} for c in categories]))
    return stored


def test_ulip2_modelnet40_keeps_xyz_as_stored_and_greys_the_colour(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    stored = write_modelnet40_ulip2(root, ["flower_pot", "airplane", "flower_pot"])
    clouds, labels, classes = read_benchmark({"name": "mn", "format": "modelnet40_ulip2", "path": str(root)}, 10000)
    assert labels == [2, 0, 2]
    assert classes == ["airplane", "bathtub", "flower pot"]
    assert_clouds_are_float32(clouds)
    for (xyz, rgb), original in zip(clouds, stored):
        np.testing.assert_array_equal(xyz, original)  # bit for bit: same values, same order, no normalisation
        np.testing.assert_array_equal(rgb, np.full((40, 3), 0.4, np.float32))


def test_ulip2_modelnet40_subsamples_in_farthest_point_order(tmp_path):
    root = tmp_path / "mn"
    stored = write_modelnet40_ulip2(root, ["airplane"])
    (xyz, rgb), *_ = read_benchmark({"format": "modelnet40_ulip2", "path": str(root)}, 16)[0]
    np.testing.assert_array_equal(xyz, stored[0][farthest_point_order(stored[0])[:16]])
    assert rgb.shape == (16, 3)


@pytest.mark.parametrize(
    "categories, remove, message",
    [
        (["airplane", "foo"], None, "category 'foo' is not in modelnet40_shape_names.txt"),
        (None, None, "modelnet40_test_split_10k_colored.json has 2 entries for 3 clouds in modelnet40_colored_10k_pc"),
        (["airplane"], "modelnet40_colored_10k_pc.npy", "modelnet40_colored_10k_pc.npy: no such file"),
        (["airplane"], "modelnet40_shape_names.txt", "modelnet40_shape_names.txt: no such file"),
    ],
)
def test_ulip2_modelnet40_names_the_file_and_the_problem(tmp_path, categories, remove, message):
    root = tmp_path / "mn"
    if categories is None:
        write_modelnet40_ulip2(root, ["airplane"] * 3)
        (root / "modelnet40_test_split_10k_colored.json").write_text(json.dumps([{"category": "airplane"}] * 2))
    else:
        write_modelnet40_ulip2(root, categories)
    if remove:
        (root / remove).unlink()
    with pytest.raises(ValueError, match=message):
        read_benchmark({"format": "modelnet40_ulip2", "path": str(root)}, 10000)


# --- ULIP ModelNet40 (8192-point .dat) -----------------------------------------------------------


def write_modelnet40_ulip(root, labels, columns=6):
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("airplane\nnight_stand\n")
    stored = [np.concatenate([cloud(i), np.ones((40, columns - 3), np.float32)], axis=1) for i in range(len(labels))]
    with open(root / "modelnet40_test_8192pts_fps.dat", "wb") as f:
        pickle.dump([stored, [np.array([label], np.int32) for label in labels]], f)
    return stored


def test_ulip_modelnet40_normalises_in_stored_order_and_greys_the_colour(tmp_path):
    stored = write_modelnet40_ulip(tmp_path, [1, 0, 1])
    clouds, labels, classes = read_benchmark({"format": "modelnet40_ulip", "path": str(tmp_path)}, 8192)
    assert labels == [1, 0, 1]
    assert classes == ["airplane", "night stand"]
    assert_clouds_are_float32(clouds)
    for (xyz, rgb), original in zip(clouds, stored):
        np.testing.assert_allclose(xyz, unit_sphere(original[:, :3]), atol=1e-6)
        assert_normalised(xyz)
        np.testing.assert_array_equal(rgb, np.full((40, 3), 0.4, np.float32))


def test_ulip_modelnet40_normalises_after_farthest_point_subsampling(tmp_path):
    stored = write_modelnet40_ulip(tmp_path, [0], columns=3)[0]
    (xyz, _), *_ = read_benchmark({"format": "modelnet40_ulip", "path": str(tmp_path)}, 16)[0]
    np.testing.assert_allclose(xyz, unit_sphere(stored[farthest_point_order(stored)[:16]]), atol=1e-6)


def test_ulip_modelnet40_rejects_a_label_outside_the_shape_names(tmp_path):
    write_modelnet40_ulip(tmp_path, [0, 2])
    with pytest.raises(ValueError, match=r"modelnet40_test_8192pts_fps.dat cloud 1: label \[2\] is not an index"):
        read_benchmark({"format": "modelnet40_ulip", "path": str(tmp_path)}, 8192)


# --- OpenShape ModelNet40 ------------------------------------------------------------------------


def write_openshape_modelnet40(root, categories, rgb_value=100):
    root.mkdir(parents=True, exist_ok=True)
    stored = [cloud(i) for i in range(len(categories))]
    stored[-1] = np.full((40, 3), 2.5, np.float32)  # every point the same: OpenShape makes it all zeros
    rgb = [np.full((40, 3), rgb_value, np.float32) for _ in categories]
    rgb[0] = np.random.default_rng(5).integers(0, 256, (40, 3)).astype(np.uint8)
    save_object_array(root / "test_pc.npy", [{"xyz": x, "rgb": c} for x, c in zip(stored, rgb)])
    split = [{"name": f"{c}_{i:04d}", "category": c} for i, c in enumerate(categories)]
    (root / "test_split.json").write_text(json.dumps(split))
    return stored, rgb


def test_openshape_modelnet40_normalises_and_scales_rgb_by_255(tmp_path):
    root = tmp_path / "meta_data" / "modelnet40"
    stored, rgb = write_openshape_modelnet40(root, ["vase", "flower_pot", "airplane", "vase"])
    clouds, labels, classes = read_benchmark({"format": "openshape_modelnet40", "path": str(root)}, 10000)
    assert classes == ["airplane", "flower pot", "vase"]
    assert labels == [2, 1, 0, 2]
    assert_clouds_are_float32(clouds)
    for (xyz, colour), original, original_rgb in zip(clouds[:-1], stored, rgb):
        np.testing.assert_allclose(xyz, unit_sphere(original), atol=1e-6)
        assert_normalised(xyz)
        np.testing.assert_allclose(colour, original_rgb.astype(np.float32) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(clouds[-1][0], np.zeros((40, 3), np.float32))
    assert clouds[1][1][0, 0] == pytest.approx(100 / 255)


def test_openshape_modelnet40_errors_name_the_file(tmp_path):
    write_openshape_modelnet40(tmp_path, ["vase", "bed"])
    (tmp_path / "test_split.json").write_text(json.dumps([{"name": "a", "category": "vase"}]))
    with pytest.raises(ValueError, match="test_split.json has 1 entries for 2 clouds in test_pc.npy"):
        read_benchmark({"format": "openshape_modelnet40", "path": str(tmp_path)}, 10000)
    write_openshape_modelnet40(tmp_path, ["vase", "bed"], rgb_value=300)
    with pytest.raises(ValueError, match=r"test_pc.npy entry 1: rgb is outside \[0, 255\]"):
        read_benchmark({"format": "openshape_modelnet40", "path": str(tmp_path)}, 10000)


# --- OpenShape Objaverse-LVIS --------------------------------------------------------------------


def write_openshape_lvis(root, categories, elsewhere=None):
    """OpenShape's layout: meta_data/split/lvis.json with data_path relative to the run folder; the
    last entry's data_path is absolute (under ``elsewhere``)."""
    entries, stored = [], []
    for i, category in enumerate(categories):
        data = {"xyz": cloud(i, 60), "rgb": np.random.default_rng(i).random((60, 3)).astype(np.float32)}
        relative = f"data/objaverse_processed/000-{i:03d}/uid{i}.npy"
        absolute = elsewhere is not None and i == len(categories) - 1
        path = (elsewhere if absolute else root) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, data, allow_pickle=True)
        entries.append(
            {"uid": f"uid{i}", "category": category, "group": "g", "data_path": str(path) if absolute else relative}
        )
        stored.append(data)
    (root / "meta_data" / "split").mkdir(parents=True, exist_ok=True)
    (root / "meta_data" / "split" / "lvis.json").write_text(json.dumps(entries))
    return stored


def test_openshape_lvis_resolves_data_paths_against_path_and_keeps_rgb(tmp_path, monkeypatch):
    root = tmp_path / "OpenShape_code"
    stored = write_openshape_lvis(root, ["sun_hat", "apple", "sun_hat"], elsewhere=tmp_path / "other")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    clouds, labels, classes = read_benchmark({"format": "openshape_lvis", "path": str(root)}, 10000)
    assert classes == ["apple", "sun hat"]
    assert labels == [1, 0, 1]
    assert_clouds_are_float32(clouds)
    for (xyz, rgb), data in zip(clouds, stored):
        np.testing.assert_allclose(xyz, unit_sphere(data["xyz"]), atol=1e-6)
        assert_normalised(xyz)
        np.testing.assert_array_equal(rgb, data["rgb"])


def test_openshape_lvis_subsamples_in_farthest_point_order_then_normalises(tmp_path):
    stored = write_openshape_lvis(tmp_path, ["apple"])[0]
    (xyz, rgb), *_ = read_benchmark({"format": "openshape_lvis", "path": str(tmp_path)}, 16)[0]
    order = farthest_point_order(stored["xyz"])[:16]
    np.testing.assert_allclose(xyz, unit_sphere(stored["xyz"][order]), atol=1e-6)
    np.testing.assert_array_equal(rgb, stored["rgb"][order])


def test_the_openshape_format_reads_a_named_split(tmp_path):
    write_openshape_lvis(tmp_path, ["b", "a"])
    (tmp_path / "meta_data" / "split" / "lvis.json").rename(tmp_path / "mine.json")
    _, labels, classes = read_benchmark({"format": "openshape", "path": str(tmp_path), "split": "mine.json"}, 10000)
    assert (labels, classes) == ([1, 0], ["a", "b"])


def test_openshape_lvis_errors_name_the_file(tmp_path):
    write_openshape_lvis(tmp_path, ["a", "b"])
    split = tmp_path / "meta_data" / "split" / "lvis.json"
    entries = json.loads(split.read_text())
    np.save(tmp_path / entries[1]["data_path"], {"xyz": cloud(0, 60), "rgb": np.full((60, 3), 100.0)})
    with pytest.raises(ValueError, match=r"uid1.npy: rgb is outside \[0, 1\]"):
        read_benchmark({"format": "openshape_lvis", "path": str(tmp_path)}, 10000)
    del entries[1]["data_path"]
    split.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="lvis.json entry 1 has no data_path"):
        read_benchmark({"format": "openshape_lvis", "path": str(tmp_path)}, 10000)
    (tmp_path / entries[0]["data_path"]).unlink()
    del entries[1]
    split.write_text(json.dumps(entries))
    with pytest.raises(ValueError, match="uid0.npy: no such file"):
        read_benchmark({"format": "openshape_lvis", "path": str(tmp_path)}, 10000)


# --- ULIP-2 Objaverse-LVIS -----------------------------------------------------------------------


def write_ulip2_lvis(root, samples: dict[str, str], all_keys=("apple", "sun_hat")):
    files, stored = {}, {}
    for i, sample in enumerate(samples):
        files[sample] = f"000-{i:03d}/{sample}.npy"
        stored[sample] = {"xyz": cloud(i, 30), "rgb": np.random.default_rng(i).random((30, 3)).astype(np.float32)}
        (root / files[sample]).parent.mkdir(parents=True, exist_ok=True)
        np.save(root / files[sample], stored[sample], allow_pickle=True)
    (root / "lvis.json").write_text(json.dumps(files))
    metadata = {
        "all_keys": list(all_keys),
        "value_to_key_mapping": dict(samples),
        "key_to_id": {key: i for i, key in enumerate(all_keys)},
    }
    (root / "objaverse_lvis_metadata.json").write_text(json.dumps(metadata))
    return stored


def test_ulip2_lvis_labels_by_the_metadata_in_file_order(tmp_path):
    root = tmp_path / "objaverse-lvis"
    stored = write_ulip2_lvis(root, {"zz": "sun_hat", "aa": "apple", "mm": "sun_hat"})
    clouds, labels, classes = read_benchmark({"format": "ulip2_lvis", "path": str(root)}, 10000)
    assert classes == ["apple", "sun_hat"]  # all_keys, as ULIP prompts with them
    assert labels == [1, 0, 1]
    assert_clouds_are_float32(clouds)
    for (xyz, rgb), sample in zip(clouds, ["zz", "aa", "mm"]):
        np.testing.assert_allclose(xyz, unit_sphere(stored[sample]["xyz"]), atol=1e-6)
        assert_normalised(xyz)
        np.testing.assert_array_equal(rgb, stored[sample]["rgb"])


def test_ulip2_lvis_rejects_a_class_whose_id_is_not_its_place_in_all_keys(tmp_path):
    write_ulip2_lvis(tmp_path, {"a": "apple"})
    metadata = json.loads((tmp_path / "objaverse_lvis_metadata.json").read_text())
    metadata["key_to_id"]["apple"] = 1
    (tmp_path / "objaverse_lvis_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="objaverse_lvis_metadata.json: class 'apple' of sample 'a' has key_to_id 1"):
        read_benchmark({"format": "ulip2_lvis", "path": str(tmp_path)}, 10000)


# --- ScanObjectNN --------------------------------------------------------------------------------


def test_scanobjectnn_h5_normalises_in_stored_order_and_greys_the_colour(tmp_path):
    (tmp_path / "main_split").mkdir()
    data = np.stack([cloud(i, 50) for i in range(3)])
    with h5py.File(tmp_path / "main_split" / "test_objectdataset.h5", "w") as f:
        f["data"] = data
        f["label"] = np.array([0, 4, 14], np.uint8)
    clouds, labels, classes = read_benchmark({"format": "scanobjectnn", "path": str(tmp_path)}, 2048)
    assert labels == [0, 4, 14]
    assert classes == SCANOBJECTNN_CLASSES
    assert (classes[4], classes[14], len(classes)) == ("chair", "toilet", 15)
    assert_clouds_are_float32(clouds)
    for (xyz, rgb), original in zip(clouds, data):
        np.testing.assert_allclose(xyz, unit_sphere(original), atol=1e-6)
        np.testing.assert_array_equal(rgb, np.full((50, 3), 0.4, np.float32))
    (xyz, _), *_ = read_benchmark({"format": "scanobjectnn", "path": str(tmp_path)}, 16)[0]
    np.testing.assert_allclose(xyz, unit_sphere(data[0][farthest_point_order(data[0])[:16]]), atol=1e-6)


def test_scanobjectnn_h5_rejects_an_unknown_label(tmp_path):
    with h5py.File(tmp_path / "variant.h5", "w") as f:
        f["data"] = np.stack([cloud(0, 10), cloud(1, 10)])
        f["label"] = np.array([3, 15])
    with pytest.raises(ValueError, match="variant.h5 cloud 1: label 15 is not one of the 15 ScanObjectNN classes"):
        read_benchmark({"format": "scanobjectnn", "path": str(tmp_path), "split": "variant.h5"}, 2048)


def test_openshape_scanobjectnn_keeps_stored_rgb_or_greys(tmp_path):
    xyz = [cloud(0, 30), cloud(1, 20)]
    rgb = [np.random.default_rng(i).random((len(x), 3)).astype(np.float32) for i, x in enumerate(xyz)]
    np.save(tmp_path / "xyz_label.npy", {"xyz": xyz, "label": np.array([2, 13]), "rgb": rgb}, allow_pickle=True)
    clouds, labels, classes = read_benchmark({"format": "openshape_scanobjectnn", "path": str(tmp_path)}, 10000)
    assert (labels, classes) == ([2, 13], SCANOBJECTNN_CLASSES)
    assert_clouds_are_float32(clouds)
    for (points, colour), original, original_rgb in zip(clouds, xyz, rgb):
        np.testing.assert_allclose(points, unit_sphere(original), atol=1e-6)
        np.testing.assert_array_equal(colour, original_rgb)
    np.save(tmp_path / "grey.npy", {"xyz": np.stack([cloud(0, 30)]), "label": [5]}, allow_pickle=True)
    clouds, labels, _ = read_benchmark(
        {"format": "openshape_scanobjectnn", "path": str(tmp_path), "split": "grey.npy"}, 10000
    )
    assert labels == [5]
    np.testing.assert_array_equal(clouds[0][1], np.full((30, 3), 0.4, np.float32))


# --- the demo's held-out objects and the dispatcher -------------------------------------------------


def test_demo_heldout_spells_class_names_with_spaces(tmp_path):
    rows = [
        {"uid": f"u{i}", "category": c, "xyz": cloud(i, 12).tolist(), "rgb": [[255, 0, 51]] * 12}
        for i, c in enumerate(["flower_pot", "mug", None, "flower_pot"])
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "t.parquet")
    clouds, labels, classes = read_benchmark({"format": "demo_heldout"}, 8, [tmp_path / "t.parquet"], 1.0)
    assert classes == ["flower pot", "mug"]
    assert labels == [0, 1, 0]
    np.testing.assert_array_equal(clouds[1][0], np.asarray(rows[1]["xyz"][:8], np.float32))
    np.testing.assert_allclose(clouds[1][1], np.tile([1.0, 0.0, 0.2], (8, 1)), rtol=1e-6)


def test_read_benchmark_rejects_unknown_formats_and_missing_paths():
    with pytest.raises(ValueError, match="unknown benchmark format 'modelnet'"):
        read_benchmark({"name": "x", "format": "modelnet"}, 10)
    with pytest.raises(ValueError, match="benchmark 'mn': format modelnet40_ulip2 needs a path"):
        read_benchmark({"name": "mn", "format": "modelnet40_ulip2"}, 10)


def test_the_schema_offers_exactly_the_readers_formats():
    schema = yaml.safe_load((REPO / "config.schema.yaml").read_text())
    benchmark = schema["$defs"]["eval"]["properties"]["benchmarks"]["items"]["properties"]
    assert sorted(benchmark["format"]["enum"]) == sorted(FORMATS)
