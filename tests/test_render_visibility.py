"""White and light-grey objects stay visible on the white background; colours stay colours.

Renders furniture-like OBJ+MTL files (``benchmarks/furniture.py``, flat ``Kd`` as third-party
collections ship them) through the render stage with the schema's default lighting, at 64 px and 4
views, and reads each view's recorded visible fraction. Under the lighting before the fix
(Standard view transform, exposure 0) lit white surfaces clipped to the background's white and
these views fell to 0.1-0.4.
"""

import io
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, dataset_settings
from PIL import Image

from ulip2_pipeline.atomic import file_sha256
from ulip2_pipeline.config import default_config
from ulip2_pipeline.settings import RenderSettings
from ulip2_pipeline.stages.manifest import MANIFEST_SCHEMA, write_manifest
from ulip2_pipeline.stages.render import stage as render_stage

sys.path.insert(0, str(REPO / "benchmarks"))
from furniture import write_obj  # noqa: E402

pytestmark = pytest.mark.render

OBJECTS = [
    ("toilet", "white"),
    ("washbasin", "white"),
    ("washing_machine", "offwhite"),
    ("cabinet", "lightgrey"),
    ("truck", "red"),
    ("chair", "black"),
]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("visibility")
    files = {f"{shape}_{colour}": write_obj(tmp / f"{shape}_{colour}.obj", shape, colour) for shape, colour in OBJECTS}
    uids = sorted(files)
    manifest = tmp / "manifest.parquet"
    write_manifest(
        pa.table(
            {
                "uid": uids,
                "source": [str(files[u]) for u in uids],
                "sha256": [file_sha256(files[u]) for u in uids],
                "bytes": [files[u].stat().st_size for u in uids],
                "mtime_ns": [0] * len(uids),
                "category": [None] * len(uids),
                "shard": ["00000"] * len(uids),
            },
            schema=MANIFEST_SCHEMA,
        ),
        manifest,
    )
    preset = {**default_config()["render_presets"]["test"], "views": 4, "resolution": 64, "samples": 4}
    settings = RenderSettings.from_config(preset).replace(threads=2)
    outputs = render_stage.Outputs(tmp / "render.parquet", tmp / "failures.parquet", tmp / "logs")
    render_stage.run_shard(render_stage.Inputs(manifest, None, "00000"), dataset_settings(), settings, outputs)
    return pq.read_table(tmp / "render.parquet").to_pylist()


def test_every_view_of_white_and_light_grey_objects_is_visible_on_white(rendered):
    light = [r for r in rendered if r["uid"].rsplit("_", 1)[1] in ("white", "offwhite", "lightgrey")]
    assert len(light) == 16
    fractions = {(r["uid"], r["view"]): round(r["visible_fraction"], 3) for r in light}
    assert min(fractions.values()) >= 0.9, fractions


def test_the_recorded_measures_match_the_picture(rendered):
    for row in rendered:
        image = np.asarray(Image.open(io.BytesIO(row["png"])).convert("RGB")).astype(int)
        differs = (np.abs(image - 255).max(axis=2) > 12).mean()
        # On white, the visible part is what differs from white; the silhouette's edge pixels are partly covered.
        assert differs == pytest.approx(row["coverage"] * row["visible_fraction"], abs=0.03), row["uid"]
        x0, y0, x1, y1 = row["bbox"]
        rows, cols = np.nonzero(np.abs(image - 255).max(axis=2) > 12)
        assert x0 <= cols.min() + 1
        assert cols.max() < x1 + 1
        assert y0 <= rows.min() + 1
        assert rows.max() < y1 + 1


def test_coloured_and_black_objects_keep_their_colours(rendered):
    def object_pixels(uid):
        pixels = []
        for row in rendered:
            if row["uid"] == uid:
                image = np.asarray(Image.open(io.BytesIO(row["png"])).convert("RGB")).astype(int)
                pixels.append(image[np.abs(image - 255).max(axis=2) > 12])
        return np.concatenate(pixels)

    red = object_pixels("truck_red").mean(axis=0)
    assert red[0] > 2 * max(red[1], red[2]), red  # red stays red ...
    assert red[0] > 100, red  # ... and bright enough to read as red
    black = object_pixels("chair_black").mean(axis=0)
    assert black.max() < 80, black
