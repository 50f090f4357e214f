"""Leaving flagged data out of training and the exports (``quality.drop_objects``, ``drop_views``,
``drop_duplicates``). Flags are written whatever the filters say; only readers apply them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

FLAG_COLUMNS = ("flags", "view_flags")


@dataclass(frozen=True)
class QualityFilter:
    drop_objects: frozenset[str] = frozenset()
    drop_views: frozenset[str] = frozenset()
    duplicates: frozenset[str] = field(default=frozenset(), repr=False)  # uids that duplicate an earlier object
    duplicates_path: str | None = None

    @classmethod
    def from_config(cls, section: dict[str, Any], duplicates_path: str | Path | None = None) -> QualityFilter:
        """The filter of a ``quality`` section; ``duplicates_path`` (the dataset's duplicates table) is read
        when ``drop_duplicates`` is on, and must then be given."""
        duplicates, duplicates_path = frozenset(), duplicates_path or section.get("duplicates_path")
        if section.get("drop_duplicates"):
            if duplicates_path is None:
                raise ValueError("quality.drop_duplicates needs the dataset's duplicates table")
            duplicates = frozenset(pq.read_table(duplicates_path, columns=["uid"]).column("uid").to_pylist())
        return cls(
            frozenset(section.get("drop_objects", ())),
            frozenset(section.get("drop_views", ())),
            duplicates,
            str(duplicates_path) if section.get("drop_duplicates") else None,
        )

    def as_config(self) -> dict[str, Any]:
        """JSON-ready, for a training job file (``from_config`` reads it back)."""
        return {
            "drop_objects": sorted(self.drop_objects),
            "drop_views": sorted(self.drop_views),
            "drop_duplicates": self.duplicates_path is not None,
            "duplicates_path": self.duplicates_path,
        }

    @property
    def active(self) -> bool:
        return bool(self.drop_objects or self.drop_views or self.duplicates)

    def views(self, view_flags: list[list[str]] | None, count: int) -> list[int]:
        """The views of an object that stay (all ``count`` of them when there is nothing to drop)."""
        if not self.drop_views or view_flags is None:
            return list(range(count))
        return [i for i, flags in enumerate(view_flags) if not self.drop_views.intersection(flags or ())]

    def keeps(self, uid: str, flags: list[str] | None, view_flags: list[list[str]] | None, count: int) -> bool:
        """Whether an object stays: not a dropped duplicate, no dropped flag, and some view left."""
        if uid in self.duplicates or self.drop_objects.intersection(flags or ()):
            return False
        return bool(self.views(view_flags, count))

    def select(self, row: dict, per_view: tuple[str, ...]) -> dict | None:
        """``row`` (with uid, views and the FLAG_COLUMNS) with its ``per_view`` columns cut to the views that
        stay, and ``view_positions`` (where they were in the row), or None when the object is left out."""
        count = len(row["views"])
        if not self.keeps(row["uid"], row.get("flags"), row.get("view_flags"), count):
            return None
        views = self.views(row.get("view_flags"), count)
        cut = {name: [row[name][i] for i in views] for name in per_view if row.get(name) is not None}
        return {**row, **cut, "view_positions": views}

    def describe(self) -> str:
        parts = [f"objects flagged {sorted(self.drop_objects)}"] if self.drop_objects else []
        parts += [f"views flagged {sorted(self.drop_views)}"] if self.drop_views else []
        parts += [f"{len(self.duplicates)} duplicates"] if self.duplicates else []
        return "dropping " + ", ".join(parts) if parts else "dropping nothing"
