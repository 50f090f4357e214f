"""The tiny stand-ins of the paper's models, built once per test session, and small shard builders."""
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ulip2_pipeline.tiny_models import build_tiny_models


@pytest.fixture(scope="session")
def stand_ins(tmp_path_factory):
    root = tmp_path_factory.mktemp("stand-ins")
    return build_tiny_models(root / "tiny-blip2", root / "tiny-clip-rank", root / "tiny-clip-embed")


def png(colour, size=64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def write_render_shard(path, rows) -> str:
    """rows: (uid, view, png bytes); the columns the caption and rank stages read."""
    table = pa.table({"uid": pa.array([r[0] for r in rows], pa.string()),
                      "view": pa.array([r[1] for r in rows], pa.int16()),
                      "png": pa.array([r[2] for r in rows], pa.binary())})
    pq.write_table(table, path)
    return str(path)


def triplet_shard(path, objects) -> str:
    """objects: (uid, [png bytes per view], [[kept captions] per view]); the columns embed reads."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "uid": pa.array([o[0] for o in objects], pa.string()),
        "views": pa.array([list(range(len(o[1]))) for o in objects], pa.list_(pa.int16())),
        "images": pa.array([[{"bytes": b, "path": f"{o[0]}/{i:03d}.png"} for i, b in enumerate(o[1])]
                            for o in objects], pa.list_(image_type)),
        "kept": pa.array([o[2] for o in objects], pa.list_(pa.list_(pa.string())))})
    pq.write_table(table, path)
    return str(path)


def caption_cfg(stand_ins, **overrides) -> dict:
    cfg = {"model": stand_ins["blip2"], "num_captions": 10, "top_p": 0.9, "max_new_tokens": 12, "temperature": 1.0,
           "prompt": "", "seed": 5, "do_sample": True, "precision": "auto", "batch_size": 2, "device": "cpu",
           "threads": 1}
    cfg.update(overrides)
    return cfg


def rank_cfg(stand_ins, **overrides) -> dict:
    cfg = {**stand_ins["rank"], "top_k": 1, "precision": "auto", "batch_size": 3, "device": "cpu", "threads": 1}
    cfg.update(overrides)
    return cfg


def embed_cfg(stand_ins, **overrides) -> dict:
    cfg = {"name": "tiny", **stand_ins["embed"], "precision": "auto", "batch_size": 4, "device": "cpu",
           "threads": 1}
    cfg.update(overrides)
    return cfg
