"""Exports read by other people's loaders (ULIP-2 Objaverse, ULIP ShapeNet-55, OpenShape) and the dataset card.

The readers below follow what each project's own dataset class accesses, field by field and in its
order (ULIP's ``ShapeNet`` in data/dataset_3d.py; OpenShape's ``Four`` in src/data.py), written
here from those accesses, so an export that drifts from the real layout fails here.
"""

import io
import json
import os
import random
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import trimesh
import yaml
from conftest import snakemake, source_settings, write_config
from PIL import Image

from ulip2_pipeline.atomic import write_parquet
from ulip2_pipeline.config import default_config
from ulip2_pipeline.exports.card import dataset_card, write_dataset_card
from ulip2_pipeline.exports.openshape import MisalignedShards, export_openshape_shard, write_openshape_split
from ulip2_pipeline.exports.openshape_texts import kept_by_score, openshape_texts
from ulip2_pipeline.exports.shapenet_ulip import (
    ULIP_AZIMUTHS,
    camera_distance,
    decode_depth_png,
    encode_depth_png,
    export_shapenet_ulip_shard,
    merge_shapenet_ulip,
    shapenet_ulip_applies,
)
from ulip2_pipeline.models.clip import load_clip
from ulip2_pipeline.models.tiny_models import build_tiny_clip
from ulip2_pipeline.settings import EmbedSettings, RenderSettings
from ulip2_pipeline.stages import embed as embed_stage
from ulip2_pipeline.stages import text_features as text_features_stage
from ulip2_pipeline.stages.embed import EMBED_SCHEMA
from ulip2_pipeline.stages.text_features import encode_both_ways
from ulip2_pipeline.stages.triplets import hf_features, triplet_schema
from ulip2_pipeline.train.zeroshot import TEMPLATES, class_embeddings

N_POINTS = 10000


# --- synthetic triplet shards, written with the triplet stage's own schema and metadata ---


def orbit_world_to_camera(azimuth_deg, elevation_deg, distance):
    """OpenCV-convention 4x4 world-to-camera of a camera orbiting the origin, y up."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    centre = distance * np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
    forward = -centre / np.linalg.norm(centre)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    matrix = np.eye(4)
    matrix[:3, :3], matrix[:3, 3] = rotation, -rotation @ centre
    return matrix.reshape(-1).tolist()


def png_bytes(colour, size=8):
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def depth_map(distance, size=8, seed=0):
    """A disc of surface depths inside the unit sphere's range, background 0."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (size / 3) ** 2
    values = rng.uniform(distance - 0.95, distance + 0.5, (size, size)).astype(np.float32)
    return np.where(inside, values, 0.0).astype("<f4")


def triplet_row(uid, category, azimuths, captions=None, depth=False, seed=0, distance=2.9238):
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(N_POINTS, 3)).astype(np.float32)
    xyz /= np.linalg.norm(xyz, axis=1).max()
    views = list(range(len(azimuths)))
    captions = captions if captions is not None else [[f"{uid} view {v} caption {c}" for c in range(3)] for v in views]
    scores = [[float(rng.uniform(-1, 1)) for _ in texts] for texts in captions]
    kept = []
    for texts, s in zip(captions, scores):
        order = sorted((i for i, t in enumerate(texts) if t), key=lambda i: (-s[i], i))
        kept.append([texts[i] for i in order[:1]])
    return {
        "uid": uid,
        "category": category,
        "xyz": xyz.tolist(),
        "rgb": rng.integers(0, 256, (N_POINTS, 3), dtype=np.uint8).tolist(),
        "images": [{"bytes": png_bytes((v * 7 % 256, 80, 160)), "path": f"{uid}/{v:03d}.png"} for v in views],
        "views": views,
        "azimuth_deg": [float(a) for a in azimuths],
        "elevation_deg": [20.0] * len(views),
        "intrinsics": [[10.0, 0, 4, 0, 10.0, 4, 0, 0, 1]] * len(views),
        "world_to_camera": [orbit_world_to_camera(a, 20.0, distance) for a in azimuths],
        "depth": [depth_map(distance, seed=seed + v).tobytes() for v in views] if depth else None,
        "center": [0.0, 0.0, 0.0],
        "scale": 1.0,
        "up_axis": "y",
        "captions": captions,
        "caption_scores": scores,
        "kept": kept,
    }


def write_triplets(path, rows, shard="00000"):
    provenance = {
        "dataset": "synthetic",
        "config_hash": "0123456789abcdef",
        "seed": 7,
        "caption_model": "test/captioner",
        "rank_model": "test/clip",
        "render_preset": {"name": "shapenet", "views": 30, "depth": True},
        "packages": {"numpy": "1"},
    }
    metadata = {
        "ulip2.schema_version": "1",
        "ulip2.stage": "triplets",
        "ulip2.shard": shard,
        "ulip2.provenance": json.dumps(provenance),
        "huggingface": json.dumps(hf_features(N_POINTS)),
    }
    write_parquet(pa.Table.from_pylist(rows, schema=triplet_schema(N_POINTS)), path, metadata)
    return path


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    section = {**default_config()["embed"], **build_tiny_clip(tmp_path_factory.mktemp("clip"))}
    return EmbedSettings.from_config({**section, "device": "cpu", "batch_size": 16})


# --- which texts an OpenShape record gets ---


def test_openshape_texts_are_category_names_else_kept_captions_best_first():
    row = {
        "category": "ashcan, trash can,ashcan",
        "captions": [["a", "b"], ["c", "d"]],
        "caption_scores": [[0.1, 0.5], [0.9, 0.2]],
        "kept": [["b"], ["c"]],
    }
    assert kept_by_score(row) == ["c", "b"]
    assert openshape_texts(row) == (["ashcan", "trash can"], "c")
    assert openshape_texts({**row, "category": None}) == (["c", "b"], "c")
    tie = {**row, "caption_scores": [[0.1, 0.5], [0.5, 0.2]]}
    assert openshape_texts(tie)[1] == "b"  # equal scores: the earlier view wins
    empty = {**row, "category": "", "kept": [[], []]}
    assert openshape_texts(empty) == ([], "")


def test_prompt_averaged_features_normalise_each_template_then_the_mean():
    rng = np.random.default_rng(0)
    table = {}

    def encode(texts):  # a fixed random vector per distinct text, unnormalised
        return np.stack([table.setdefault(t, rng.normal(size=5) * 3) for t in texts])

    original, prompt_avg = encode_both_ways(encode, ["mug", "a red ball"], batch_size=7)
    for i, text in enumerate(["mug", "a red ball"]):
        np.testing.assert_allclose(original[i], table[text] / np.linalg.norm(table[text]), rtol=1e-6)
        prompted = np.stack([table[t.format(text)] / np.linalg.norm(table[t.format(text)]) for t in TEMPLATES])
        expected = prompted.mean(axis=0)
        np.testing.assert_allclose(prompt_avg[i], expected / np.linalg.norm(expected), rtol=1e-5)
    assert original.dtype == prompt_avg.dtype == np.float32


def test_text_features_come_from_the_embed_stages_clip(tmp_path, tiny_clip):
    rows = [triplet_row("mug__a", "mug", [0, 120, 240], seed=1), triplet_row("x__b", None, [0, 120], seed=2)]
    triplets = write_triplets(tmp_path / "t.parquet", rows)
    text_features_stage.run_shard(
        text_features_stage.Inputs(triplets, "00000"), tiny_clip, text_features_stage.Outputs(tmp_path / "text.parquet")
    )
    embed_stage.run_shard(
        embed_stage.Inputs(triplets, "00000"), tiny_clip, embed_stage.Outputs(tmp_path / "embed.parquet")
    )
    features = pq.read_table(tmp_path / "text.parquet").to_pylist()
    embeds = pq.read_table(tmp_path / "embed.parquet").to_pylist()
    assert [f["uid"] for f in features] == ["mug__a", "x__b"]
    assert features[0]["texts"][0] == "mug"
    # The best caption, encoded here, is the very vector the embed stage computed for it.
    for feature, embed in zip(features, embeds):
        caption = openshape_texts(rows[features.index(feature)])[1]
        mine = feature["original"][feature["texts"].index(caption)]
        theirs = embed["caption_embeddings"][embed["captions"].index(caption)]
        np.testing.assert_allclose(mine, theirs, atol=1e-5)
    # Category prompt averages agree with the zero-shot code's class embeddings of the same model.
    clip = load_clip(tiny_clip.arch, tiny_clip.pretrained, tiny_clip.arch_config, torch.device("cpu"))
    classes = class_embeddings(lambda t: clip.model.encode_text(clip.tokenizer(t)), ["mug"]).numpy()
    np.testing.assert_allclose(features[0]["prompt_avg"][0], classes[0], atol=1e-5)
    assert pq.read_schema(tmp_path / "text.parquet").metadata[b"ulip2.dtype"] == b"float32"


def test_an_empty_shard_needs_no_model_and_exports_nothing(tmp_path):
    triplets = write_triplets(tmp_path / "t.parquet", [])
    missing_model = EmbedSettings.from_config(
        {
            **default_config()["embed"],
            "arch": "no-such-arch",
            "pretrained": "/nonexistent",
            "arch_config": None,
            "device": "cpu",
            "batch_size": 4,
        }
    )
    text_features_stage.run_shard(
        text_features_stage.Inputs(triplets, "00000"),
        missing_model,
        text_features_stage.Outputs(tmp_path / "text.parquet"),
    )
    write_parquet(EMBED_SCHEMA.empty_table(), tmp_path / "embed.parquet")
    assert pq.read_table(tmp_path / "text.parquet").num_rows == 0
    listing = export_openshape_shard(
        triplets,
        tmp_path / "embed.parquet",
        tmp_path / "text.parquet",
        "d",
        "00000",
        tmp_path / "openshape",
        tmp_path / "openshape" / "shards" / "00000.json",
    )
    assert listing == {"objects": [], "skipped": {}}
    assert (
        write_openshape_split(
            [tmp_path / "openshape" / "shards" / "00000.json"],
            tmp_path / "openshape",
            tmp_path / "openshape" / "train.json",
        )
        == 0
    )
    assert json.loads((tmp_path / "openshape" / "train.json").read_text()) == []
    fragment = export_shapenet_ulip_shard(triplets, tmp_path / "ulip", tmp_path / "ulip" / "shards" / "00000.json")
    assert fragment["objects"] == []
    assert merge_shapenet_ulip([tmp_path / "ulip" / "shards" / "00000.json"], tmp_path / "ulip") == 0
    assert (tmp_path / "ulip" / "train.txt").read_text() == ""


def test_openshape_export_skips_objects_without_text_and_refuses_misaligned_shards(tmp_path, tiny_clip):
    no_text = triplet_row("x__silent", None, [0, 120], captions=[["", ""], ["", ""]], seed=3)
    rows = [triplet_row("mug__a", "mug", [0, 120], seed=1), no_text]
    triplets = write_triplets(tmp_path / "t.parquet", rows)
    text_features_stage.run_shard(
        text_features_stage.Inputs(triplets, "00000"), tiny_clip, text_features_stage.Outputs(tmp_path / "text.parquet")
    )
    embed_stage.run_shard(
        embed_stage.Inputs(triplets, "00000"), tiny_clip, embed_stage.Outputs(tmp_path / "embed.parquet")
    )
    root = tmp_path / "openshape"
    listing = export_openshape_shard(
        triplets,
        tmp_path / "embed.parquet",
        tmp_path / "text.parquet",
        "mine",
        "00000",
        root,
        root / "shards" / "00000.json",
    )
    assert [e["id"] for e in listing["objects"]] == ["mug__a"]
    assert listing["skipped"]["x__silent"].startswith("no_text")
    assert not (root / "x__silent.npy").exists()
    reordered = write_triplets(tmp_path / "r.parquet", rows[::-1])
    with pytest.raises(MisalignedShards, match="embed"):
        export_openshape_shard(
            reordered,
            tmp_path / "embed.parquet",
            tmp_path / "text.parquet",
            "mine",
            "00000",
            root,
            root / "shards" / "r.json",
        )


def test_a_synthetic_shard_reads_like_openshapes_four_loader(tmp_path, tiny_clip):
    rows = [triplet_row("mug__a", "mug", [0, 120, 240], seed=1), triplet_row("x__b", None, [0, 180], seed=2)]
    triplets = write_triplets(tmp_path / "t.parquet", rows)
    text_features_stage.run_shard(
        text_features_stage.Inputs(triplets, "00000"), tiny_clip, text_features_stage.Outputs(tmp_path / "text.parquet")
    )
    embed_stage.run_shard(
        embed_stage.Inputs(triplets, "00000"), tiny_clip, embed_stage.Outputs(tmp_path / "embed.parquet")
    )
    root = tmp_path / "openshape"
    export_openshape_shard(
        triplets,
        tmp_path / "embed.parquet",
        tmp_path / "text.parquet",
        "mine",
        "00000",
        root,
        root / "shards" / "00000.json",
    )
    write_openshape_split([root / "shards" / "00000.json"], root, root / "train.json")
    split = json.loads((root / "train.json").read_text())
    random.seed(1)
    np.random.seed(1)
    for use_prompt_engineering in (True, False):
        for label in ("mine", "Objaverse"):
            samples = [
                four_sample(
                    {**entry, "dataset": label}, 2048, ["text", "caption", "retrieval_text"], use_prompt_engineering
                )
                for entry in split
                for _ in range(8)
            ]
            batch = collate_like_openshape(samples)
            assert batch["features_dense"].shape == (16, 2048, 6)
            assert batch["img_feat"].shape == batch["text_feat"].shape == (16, 32)
    embed = pq.read_table(tmp_path / "embed.parquet").to_pylist()[1]
    data = np.load(split[1]["data_path"], allow_pickle=True).item()
    assert data["text"] == kept_by_score(rows[1])
    assert data["blip_caption"] == data["text"][0]
    np.testing.assert_array_equal(data["image_feat"], np.asarray(embed["image_embeddings"], np.float32))


# --- ULIP's ShapeNet-55 layout ---


def read_like_ulip_shapenet(data_path, pc_path, image_path, npoints=8192):
    """Every sample ULIP's ShapeNet dataset can draw: train.txt + test.txt lines, taxonomy names,
    the point file, and each of the 30 azimuths as RGB and as depth, opened as ULIP opens them."""
    taxonomy = {entry["synsetId"]: entry for entry in json.loads((data_path / "taxonomy.json").read_text())}
    lines = (data_path / "test.txt").read_text().splitlines() + (data_path / "train.txt").read_text().splitlines()
    samples = []
    for line in lines:
        line = line.strip()
        taxonomy_id = line.split("-")[0]
        model_id = line[len(taxonomy_id) + 1 :].split(".")[0]
        points = np.load(pc_path / line).astype(np.float32)
        assert points.shape[0] >= npoints  # else ULIP's permutation indexes past the end
        names = [n.strip() for n in taxonomy[taxonomy_id]["name"].split(",") if n.strip()]
        images = {}
        for degree in range(0, 360, 12):
            for kind in ("", "_depth0001"):
                stem = f"{taxonomy_id}-{model_id}"
                path = image_path / stem / f"{stem}_r_{(3 - len(str(degree))) * '0' + str(degree)}{kind}.png"
                with open(path, "rb") as f:
                    images[(degree, kind)] = Image.open(f).convert("RGB")
        samples.append(
            {"taxonomy_id": taxonomy_id, "model_id": model_id, "points": points, "names": names, "images": images}
        )
    return samples


def shapenet_rows():
    return [
        triplet_row("03001627_1a2b", "chair", ULIP_AZIMUTHS, depth=True, seed=1),
        triplet_row("04379243_ff00", "table", ULIP_AZIMUTHS, depth=True, seed=2),
        triplet_row("04379243_ee11", "table", ULIP_AZIMUTHS[:-1], depth=True, seed=3),  # a view failed
        triplet_row("04379243_dd22", "table", ULIP_AZIMUTHS, depth=False, seed=4),  # no depth
        triplet_row("mug__mug_000", "mug", ULIP_AZIMUTHS, depth=True, seed=5),  # not a ShapeNet uid
    ]


def test_shapenet_export_reads_like_ulips_shapenet_loader(tmp_path):
    rows = shapenet_rows()
    root = tmp_path / "shapenet_ulip"
    fragments = []
    for shard, chunk in (("00000", rows[:2]), ("00001", rows[2:])):
        triplets = write_triplets(tmp_path / f"{shard}.parquet", chunk, shard)
        fragments.append(root / "shards" / f"{shard}.json")
        export_shapenet_ulip_shard(triplets, root, fragments[-1])
    assert merge_shapenet_ulip(fragments, root) == 2
    samples = read_like_ulip_shapenet(root, root / "shapenet_pc", root / "rendered_images")
    assert [(s["taxonomy_id"], s["model_id"], s["names"]) for s in samples] == [
        ("03001627", "1a2b", ["chair"]),
        ("04379243", "ff00", ["table"]),
    ]
    for sample, row in zip(samples, rows):
        np.testing.assert_array_equal(sample["points"], np.asarray(row["xyz"][:8192], np.float32))
        for view, azimuth in enumerate(ULIP_AZIMUTHS):
            assert (
                sample["images"][(azimuth, "")].tobytes()
                == Image.open(io.BytesIO(row["images"][view]["bytes"])).convert("RGB").tobytes()
            )
            name = f"{sample['taxonomy_id']}-{sample['model_id']}"
            depth_png = (root / "rendered_images" / name / f"{name}_r_{azimuth:03d}_depth0001.png").read_bytes()
            assert Image.open(io.BytesIO(depth_png)).mode == "L"  # 8-bit greyscale, as ULIP's files
            distance = camera_distance(row["world_to_camera"][view])
            original = np.frombuffer(row["depth"][view], "<f4").reshape(8, 8)
            decoded = decode_depth_png(depth_png, distance)
            np.testing.assert_array_equal(decoded == 0, original == 0)
            np.testing.assert_allclose(decoded, original, atol=1.0 / 254 + 1e-6)
    skipped = json.loads(fragments[1].read_text())["skipped"]
    assert skipped["04379243_ee11"].startswith("missing_views")
    assert "348" in skipped["04379243_ee11"]
    assert skipped["04379243_dd22"].startswith("missing_views")
    assert skipped["mug__mug_000"].startswith("not_shapenet_uid")
    taxonomy = json.loads((root / "taxonomy.json").read_text())
    assert [(t["synsetId"], t["numInstances"]) for t in taxonomy] == [("03001627", 1), ("04379243", 1)]
    assert json.loads((root / "depth_encoding.json").read_text())["camera_distances_D"] == [2.9238]


def test_depth_encoding_is_linear_over_the_unit_sphere_near_dark_background_white():
    distance = 3.0
    depth = np.array([[0.0, 2.0, 3.0, 4.0, 5.0]], np.float32)  # background, nearest, centre, farthest, beyond
    pixels = np.asarray(Image.open(io.BytesIO(encode_depth_png(depth, distance))))
    assert pixels.dtype == np.uint8
    assert pixels.tolist() == [[255, 0, 127, 254, 254]]
    assert camera_distance(orbit_world_to_camera(72, 20, 2.5)) == pytest.approx(2.5)


def test_shapenet_layout_applies_to_shapenet_sources_with_30_depth_views_only():
    preset = RenderSettings.from_config(default_config()["render_presets"]["test"])
    shapenet = preset.replace(views=30, depth=True)
    source = source_settings(kind="shapenet", path="/data/ShapeNetCore.v2")
    assert shapenet_ulip_applies(source, shapenet)
    assert not shapenet_ulip_applies(source, shapenet.replace(depth=False))
    assert not shapenet_ulip_applies(source, shapenet.replace(views=12))
    assert not shapenet_ulip_applies(source_settings(kind="demo"), shapenet)


# --- the dataset card ---


def card_folder(tmp_path, shards):
    folder = tmp_path / "results" / "mine"
    paths = [
        write_triplets(folder / "triplets" / f"{i:05d}.parquet", rows, f"{i:05d}") for i, rows in enumerate(shards)
    ]
    # Another stage's Parquet in the same folder: the card's configs must keep it out of the dataset.
    write_parquet(pa.table({"uid": ["a"], "view": [0]}), folder / "render" / "00000.parquet")
    summary = {
        "objects_in": 9,
        "triplets_out": sum(map(len, shards)),
        "shards": [f"{i:05d}" for i in range(len(shards))],
        "failures": {"points": {"unreadable": 2}, "render": {"importer_error": 1, "timeout": 1}},
        "objects_failed": 4,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    write_dataset_card("mine", paths, folder / "summary.json", folder / "README.md")
    return folder, paths


def load_offline(workdir, folder, cache):
    """``datasets.load_dataset(folder)`` run in ``workdir`` with the hub unreachable (a subprocess: the offline
    flags are read at import)."""
    code = (
        "import sys, json, datasets; ds = datasets.load_dataset(sys.argv[1], split='train'); "
        "print(json.dumps({'rows': len(ds), 'columns': ds.column_names, "
        "'image': type(ds[0]['images'][0]).__name__ if len(ds) else None}))"
    )
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(cache)}
    result = subprocess.run(
        [sys.executable, "-c", code, folder], capture_output=True, text=True, env=env, timeout=300, cwd=workdir
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_card_documents_every_column_sizes_provenance_failures_and_loads_with_datasets(tmp_path):
    shards = [
        [triplet_row("mug__a", "mug", [0, 120, 240], seed=1), triplet_row("mug__b", "mug", [0, 120], seed=2)],
        [],
    ]  # an empty shard too
    folder, paths = card_folder(tmp_path, shards)
    text = (folder / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    meta = yaml.safe_load(header)
    assert meta["configs"] == [
        {
            "config_name": "default",
            "default": True,
            "data_files": [{"split": "train", "path": "triplets/*.parquet"}],
            "batch_size": 32,
        }
    ]
    assert meta["size_categories"] == ["n<1K"]
    for column in triplet_schema(N_POINTS).names:
        line = next(text for text in body.splitlines() if text.startswith(f"| `{column}` |"))
        assert "not described" not in line, line
    assert "| `xyz` | 10000 × 3 × float32 |" in body
    assert "| `images` | list of Image |" in body
    total = sum(p.stat().st_size for p in paths)
    assert f"| 2 | 2 | {total} | 5 | 2-3 |" in body
    assert "`test/captioner`" in body
    assert "`0123456789abcdef`" in body
    assert "| seed | 7 |" in body
    assert "| render | timeout | 1 |" in body
    assert "triplets out: **2**" in body
    assert dataset_card("mine", paths, folder / "summary.json") == text  # deterministic
    loaded = load_offline(tmp_path, "results/mine", tmp_path / "hf")
    assert loaded == {"rows": 2, "columns": triplet_schema(N_POINTS).names, "image": "PngImageFile"}


# --- end to end, on a real demo run ---


def four_sample(meta, num_points, text_source, use_prompt_engineering):
    """One training sample as OpenShape's Four dataset builds it (train phase, GPT-4 filtering off),
    touching the split entry and the .npy exactly where and how it does."""
    version = "prompt_avg" if use_prompt_engineering else "original"
    data = np.load(meta["data_path"], allow_pickle=True).item()
    n = data["xyz"].shape[0]
    idx = random.sample(range(n), num_points)
    xyz, rgb = data["xyz"][idx], data["rgb"][idx]
    xyz[:, [1, 2]] = xyz[:, [2, 1]]  # y_up: true
    features = np.concatenate([xyz, rgb], axis=1)  # use_color: true
    objaverse = meta["dataset"] == "Objaverse"
    texts, text_feat = [], []
    if "text" in text_source:
        i = 0 if objaverse else np.random.randint(len(data["text"]))
        texts.append(data["text"][i])
        text_feat.append(data["text_feat"][i][version])
    if "caption" in text_source:
        if np.random.rand() < 0.5:
            if len(data["blip_caption"]) > 0:
                texts.append(data["blip_caption"])
                text_feat.append(data["blip_caption_feat"][version])
        elif len(data["msft_caption"]) > 0:
            texts.append(data["msft_caption"])
            text_feat.append(data["msft_caption_feat"][version])
    if "retrieval_text" in text_source and len(data["retrieval_text"]) > 0:
        j = np.random.randint(len(data["retrieval_text"]))
        texts.append(data["retrieval_text"][j])
        text_feat.append(data["retrieval_text_feat"][j]["original"])
    chosen_text, chosen_feat = None, None
    if text_feat:
        k = np.random.randint(len(texts))
        chosen_text, chosen_feat = texts[k], torch.from_numpy(text_feat[k]).type(torch.float32).reshape(-1)
    if objaverse and np.random.rand() < 0.5:
        img_feat = data["thumbnail_feat"]
    else:
        img_feat = data["image_feat"][np.random.randint(data["image_feat"].shape[0])]
    assert not np.isnan(xyz).any()
    return {
        "xyz": torch.from_numpy(xyz).type(torch.float32),
        "features": torch.from_numpy(features).type(torch.float32),
        "img_feat": torch.from_numpy(img_feat).type(torch.float32).reshape(-1),
        "text_feat": chosen_feat,
        "texts": chosen_text,
        "group": meta["group"],
        "name": meta["id"],
        "dataset": meta["dataset"],
    }


def collate_like_openshape(samples):
    return {
        "xyz_dense": torch.stack([s["xyz"] for s in samples]).float(),
        "features_dense": torch.stack([s["features"] for s in samples]),
        "img_feat": torch.stack([s["img_feat"] for s in samples]),
        "text_feat": torch.stack([s["text_feat"] for s in samples if s["text_feat"] is not None]),
        "group": [s["group"] for s in samples],
        "name": [s["name"] for s in samples],
    }


@pytest.fixture(scope="module")
def demo(demo_run):
    workdir, config, _ = demo_run
    return workdir, workdir / "results" / "demo", config


@pytest.mark.e2e
def test_openshape_export_reads_like_openshapes_four_loader(demo):
    workdir, results, config = demo
    split = json.loads((results / "export" / "openshape" / "train.json").read_text())
    manifest = {r["uid"]: r for r in pq.read_table(results / "manifest.parquet").to_pylist()}
    triplets = {
        r["uid"]: r
        for p in sorted((results / "triplets").glob("*.parquet"))
        for r in pq.read_table(p, columns=["uid", "category", "xyz", "rgb"]).to_pylist()
    }
    embed_dir = results / "embed" / config["embed"]["name"]
    embeds = {r["uid"]: r for p in sorted(embed_dir.glob("*.parquet")) for r in pq.read_table(p).to_pylist()}
    assert sorted(e["id"] for e in split) == sorted(triplets)
    assert len(split) == 60
    for entry in split:
        assert set(entry) == {"id", "data_path", "dataset", "group"}
        assert os.path.isabs(entry["data_path"])
        assert entry["dataset"] == "demo"
        assert entry["group"] == manifest[entry["id"]]["shard"]
    random.seed(0)
    np.random.seed(0)
    width = len(next(iter(embeds.values()))["image_embeddings"][0])
    for use_prompt_engineering in (True, False):
        for relabel in ("demo", "Objaverse"):  # both of Four's paths: get_others and get_objaverse
            samples = [
                four_sample(
                    {**entry, "dataset": relabel}, 10000, ["text", "caption", "retrieval_text"], use_prompt_engineering
                )
                for entry in split
                for _ in range(2)
            ]
            batch = collate_like_openshape(samples)
            assert batch["xyz_dense"].shape == (120, 10000, 3)
            assert batch["features_dense"].shape == (120, 10000, 6)
            assert batch["img_feat"].shape == (120, width)
            assert batch["text_feat"].shape == (120, width)
            assert 0.0 <= batch["features_dense"][..., 3:].min()
            assert batch["features_dense"][..., 3:].max() <= 1.0
            torch.testing.assert_close(batch["text_feat"].norm(dim=1), torch.ones(120), atol=1e-5, rtol=0)
    clip_cfg = config["embed"]
    clip = load_clip(
        clip_cfg["arch"],
        str(workdir / clip_cfg["pretrained"]),
        str(workdir / clip_cfg["arch_config"]),
        torch.device("cpu"),
    )
    categories = sorted({t["category"] for t in triplets.values()})
    classes = dict(
        zip(categories, class_embeddings(lambda t: clip.model.encode_text(clip.tokenizer(t)), categories).numpy())
    )
    for entry in split:
        data = np.load(entry["data_path"], allow_pickle=True).item()
        triplet, embed = triplets[entry["id"]], embeds[entry["id"]]
        assert (data["id"], data["group"], data["dataset"]) == (entry["id"], entry["group"], "demo")
        assert data["xyz"].dtype == data["rgb"].dtype == np.float32
        np.testing.assert_array_equal(data["xyz"], np.asarray(triplet["xyz"], np.float32))
        np.testing.assert_allclose(data["rgb"], np.asarray(triplet["rgb"]) / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(data["image_feat"], np.asarray(embed["image_embeddings"], np.float32))
        np.testing.assert_array_equal(data["thumbnail_feat"], data["image_feat"][0])
        assert data["text"] == [triplet["category"]]
        np.testing.assert_allclose(data["text_feat"][0]["prompt_avg"], classes[triplet["category"]], atol=1e-5)
        assert data["blip_caption"] in embed["captions"]
        np.testing.assert_array_equal(
            data["blip_caption_feat"]["original"],
            embed["caption_embeddings"][embed["captions"].index(data["blip_caption"])],
        )
        assert data["msft_caption"] == ""
        assert data["retrieval_text"] == []
        assert data["up_axis"] == "y"


@pytest.mark.e2e
def test_the_demo_card_loads_the_triplets_with_datasets(demo, tmp_path):
    workdir, results, _ = demo
    text = (results / "README.md").read_text()
    assert text.startswith("---\n")
    assert "## Failures" in text
    assert "| points | unreadable | 1 |" in text
    assert "| 60 | " in text  # objects
    loaded = load_offline(workdir, "results/demo", tmp_path / "hf")
    assert loaded["rows"] == 60
    assert loaded["image"] == "PngImageFile"


@pytest.mark.e2e
def test_ulip_export_reads_like_ulips_loader(demo):
    _, results, _ = demo
    root = results / "export" / "ulip"
    captions = json.loads((root / "captions.json").read_text())
    uids = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "shards")
    assert len(uids) == 60
    for uid in uids[:5]:
        points = np.load(root / uid / f"{uid}_8192.npz")["arr_0"]
        assert points.shape == (8192, 3)
        assert points.dtype == np.float32
        assert np.abs(points).max() <= 1.0 + 1e-6
        for view in range(3):
            image = f"{uid}/{view:03d}.png"
            assert Image.open(root / image).size == (64, 64)
            assert isinstance(captions[image], list)
            assert all(isinstance(c, str) and c for c in captions[image])


@pytest.mark.e2e
def test_a_shapenet_tree_exports_to_ulips_shapenet_layout(tmp_path):
    tree = tmp_path / "ShapeNetCore.v2"
    for synset, model, mesh in [
        ("03001627", "c0ffee", trimesh.creation.box(extents=[1, 2, 1])),
        ("04379243", "beef01", trimesh.creation.cylinder(radius=1, height=0.5)),
    ]:
        (tree / synset / model / "models").mkdir(parents=True)
        mesh.export(tree / synset / model / "models" / "model_normalized.obj")
    config = write_config(tmp_path)
    config["datasets"] = {
        "sn": {
            "source": {"kind": "shapenet", "path": str(tree)},
            "shard_size": 8,
            "render_preset": "shapenet",
            "up_axis": "y",
            "seed": 0,
        }
    }
    config["render_presets"]["shapenet"].update(resolution=16, samples=1)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(tmp_path, "export_shapenet_ulip", "dataset_card")
    root = tmp_path / "results" / "sn" / "export" / "shapenet_ulip"
    samples = read_like_ulip_shapenet(root, root / "shapenet_pc", root / "rendered_images")
    assert [(s["taxonomy_id"], s["model_id"], s["names"]) for s in samples] == [
        ("03001627", "c0ffee", ["chair"]),
        ("04379243", "beef01", ["table"]),
    ]
    triplets = pq.read_table(tmp_path / "results" / "sn" / "triplets" / "00000.parquet").to_pylist()
    for sample, row in zip(samples, triplets):
        assert sample["images"][(0, "")].size == (16, 16)
        name = f"{sample['taxonomy_id']}-{sample['model_id']}"
        for view, azimuth in enumerate(row["azimuth_deg"]):
            png = (root / "rendered_images" / name / f"{name}_r_{round(azimuth):03d}_depth0001.png").read_bytes()
            original = np.frombuffer(row["depth"][view], "<f4").reshape(16, 16)
            decoded = decode_depth_png(png, camera_distance(row["world_to_camera"][view]))
            assert (original > 0).any()
            np.testing.assert_array_equal(decoded == 0, original == 0)
            np.testing.assert_allclose(decoded, original, atol=1.0 / 254 + 1e-6)
    # The default target builds this layout for a ShapeNet dataset.
    dry = snakemake(tmp_path, "-n", "--forcerun", "export_shapenet_ulip_lists")
    assert "export_shapenet_ulip_lists" in dry.stdout + dry.stderr
