"""Is the file a stage is about to read the one the manifest recorded? (Compared by content.)"""

from __future__ import annotations

from pathlib import Path

from ulip2_pipeline.atomic import file_sha256
from ulip2_pipeline.failures import ObjectFailure


def check_source(path: str | Path, expected_sha256: str | None) -> None:
    """Raise ``missing_source``, ``unreadable_file`` or ``source_changed`` unless ``path`` holds the
    manifest's content."""
    path = Path(path)
    if not path.exists():
        raise ObjectFailure(
            "missing_source",
            f"{path} does not exist; if it was removed on purpose, rescan "
            "with `snakemake <target> --forcerun manifest`",
        )
    if expected_sha256 is None:
        return
    try:
        actual = file_sha256(path)
    except OSError as exc:  # a directory in its place, its permissions taken away, a failing file system
        raise ObjectFailure(
            "unreadable_file", f"{path} could not be read to check it: {type(exc).__name__}: {exc}"
        ) from exc
    if actual != expected_sha256:
        raise ObjectFailure(
            "source_changed",
            f"{path} changed after the manifest was built (sha256 {actual}, "
            f"the manifest recorded {expected_sha256}); rescan with "
            "`snakemake <target> --forcerun manifest`",
        )
