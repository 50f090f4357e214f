"""Real third-party meshes for tests: the pybullet_data folder of the pybullet wheel.

About 1,100 OBJ (with MTL and textures), 86 STL and 12 DAE files written by other
people's tools: the kind of input the pipeline meets in the wild. The wheel (about
100 MB) is fetched once with pip into a cache folder and only ``pybullet_data/`` is
kept; a test that cannot have it is skipped with the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

PYBULLET = "pybullet==3.2.7"


def cache_dir() -> Path:
    return Path(os.environ.get("ULIP2_TEST_CACHE") or Path.home() / ".cache" / "ulip2-pipeline")


def pybullet_data_dir() -> Path:
    """The extracted ``pybullet_data`` folder (fetched on first use), or a pytest skip saying why not."""
    root = cache_dir() / PYBULLET.replace("==", "-")
    target = root / "pybullet_data"
    if target.is_dir():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        with open(root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be fetching it right now
            if not target.is_dir():
                _fetch(root, target)
    except (OSError, subprocess.SubprocessError, zipfile.BadZipFile) as exc:
        pytest.skip(
            f"the real-world meshes of {PYBULLET} could not be had ({type(exc).__name__}: {exc}); "
            f"they are fetched with pip into {cache_dir()} (set ULIP2_TEST_CACHE to move it)"
        )
    return target


def _fetch(root: Path, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", PYBULLET, "--no-deps", "--only-binary", ":all:", "-d", tmp],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if result.returncode != 0:
            raise OSError(f"pip download failed: {result.stderr.strip()[-500:]}")
        wheel = next(Path(tmp).glob("*.whl"))
        staging = Path(tmp) / "extracted"
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith("pybullet_data/")]
            archive.extractall(staging, members)
        # One rename makes the folder appear complete or not at all.
        shutil.move(str(staging / "pybullet_data"), str(target))
