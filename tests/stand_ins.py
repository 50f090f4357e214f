"""The tiny stand-ins of the paper's models, built once per machine and version of their code, and small shard
builders."""

import fcntl
import hashlib
import io
import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

# open_clip and the BLIP-2 classes (which transformers imports lazily, in seconds) are loaded at collection:
# mutation testing forks one test session per mutant from a process that has collected the tests.
import open_clip  # noqa: F401
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from transformers import Blip2ForConditionalGeneration, Blip2Processor  # noqa: F401

from ulip2_pipeline.config import default_config
from ulip2_pipeline.models import opt_vocab, real_models, t5_vocab, tiny_models
from ulip2_pipeline.settings import CaptionSettings, EmbedSettings, RankSettings


def stand_ins_key() -> str:
    """Changes with the code that builds the stand-ins and the libraries that save them."""
    digest = hashlib.sha256()
    for module in (tiny_models, real_models, opt_vocab, t5_vocab):
        digest.update(Path(module.__file__).read_bytes())
    for package in ("torch", "transformers", "open_clip_torch"):
        digest.update(version(package).encode())
    return digest.hexdigest()[:16]


@pytest.fixture(scope="session")
def stand_ins():
    """Built once into the temporary folder and then only loaded: building takes seconds, and mutation testing
    starts a test session per mutant. Tests only read them."""
    root = Path(tempfile.gettempdir()) / f"ulip2-stand-ins-{stand_ins_key()}"
    built = root / "built.json"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(root, ignore_errors=True)
            models = tiny_models.build_tiny_models(
                root / "tiny-blip2", root / "tiny-clip-rank", root / "tiny-clip-embed"
            )
            built.write_text(json.dumps(models))
    return json.loads(built.read_text())


@pytest.fixture(scope="session")
def t5_stand_in() -> str:
    """The BLIP-2 Flan-T5 stand-in's folder, built once like ``stand_ins`` (in a folder of its own)."""
    root = Path(tempfile.gettempdir()) / f"ulip2-stand-in-t5-{stand_ins_key()}"
    built = root / "built.json"
    with open(f"{root}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(root, ignore_errors=True)
            folder = tiny_models.build_tiny_blip2_t5(root / "tiny-blip2-t5")
            built.write_text(json.dumps(str(folder)))
    return json.loads(built.read_text())


def png(colour, size=64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def write_render_shard(path, rows) -> str:
    """rows: (uid, view, png bytes); the columns the caption and rank stages read."""
    table = pa.table(
        {
            "uid": pa.array([r[0] for r in rows], pa.string()),
            "view": pa.array([r[1] for r in rows], pa.int16()),
            "png": pa.array([r[2] for r in rows], pa.binary()),
        }
    )
    pq.write_table(table, path)
    return str(path)


def triplet_shard(path, objects) -> str:
    """objects: (uid, [png bytes per view], [[kept captions] per view]); the columns embed reads."""
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "uid": pa.array([o[0] for o in objects], pa.string()),
            "views": pa.array([list(range(len(o[1]))) for o in objects], pa.list_(pa.int16())),
            "images": pa.array(
                [[{"bytes": b, "path": f"{o[0]}/{i:03d}.png"} for i, b in enumerate(o[1])] for o in objects],
                pa.list_(image_type),
            ),
            "kept": pa.array([o[2] for o in objects], pa.list_(pa.list_(pa.string()))),
        }
    )
    pq.write_table(table, path)
    return str(path)


def caption_cfg(stand_ins, **overrides) -> CaptionSettings:
    """The schema's caption defaults on the BLIP-2 stand-in, short captions, small batches on the CPU."""
    section = {**default_config()["caption"], "model": stand_ins["blip2"], "max_new_tokens": 12, "seed": 5}
    section.update(batch_size=2, device="cpu", threads=1)
    return CaptionSettings.from_config({**section, **overrides})


def rank_cfg(stand_ins, **overrides) -> RankSettings:
    section = {**default_config()["rank"], **stand_ins["rank"], "batch_size": 3, "device": "cpu", "threads": 1}
    return RankSettings.from_config({**section, **overrides})


def embed_cfg(stand_ins, **overrides) -> EmbedSettings:
    section = {**default_config()["embed"], "name": "tiny", **stand_ins["embed"]}
    section.update(batch_size=4, device="cpu", threads=1)
    return EmbedSettings.from_config({**section, **overrides})
