"""Where every object went: the stage it left at and why, per shard and for the whole dataset.

The stages form a chain, manifest -> points -> render -> caption -> rank -> triplets. An
object enters a stage when it came out of the one before, and it leaves the chain at
the first stage it did not come out of; that stage's ledger row says why. So for every
stage, objects in = objects out + objects failed, and for the dataset,
objects in = triplets out + objects failed.
"""

from __future__ import annotations

from collections import Counter

CHAIN = ("points", "render", "caption", "rank", "triplets")
# Rows that flag an object the stage did process (it rendered, with a fallback colour).
# Ledger rows that flag an object without leaving it out: the render's missing textures and the
# quality flags (ulip2_pipeline.quality.flags.OBJECT_FLAGS; a test keeps the two equal).
FLAG_REASONS = frozenset(
    {
        "missing_texture",
        "tiny_object",
        "outlier_geometry",
        "blank_view",
        "low_contrast",
        "empty_caption",
        "repetitive_caption",
        "degenerate_caption",
    }
)
# Why an object is not in its shard's triplets, by the stage it left at.
JOIN_REASONS = {"points": "no_points", "render": "no_views", "caption": "no_captions", "rank": "no_captions"}


def _first_reason(rows: list[dict]) -> tuple[str, str]:
    row = next((r for r in rows if r["reason"] not in FLAG_REASONS), None)
    if row is None:
        return "unrecorded", "the stage wrote no ledger row for this object (a bug: please report it)"
    return row["reason"], row["detail"]


def account_shard(uids: list[str], present: dict[str, set[str]], ledgers: dict[str, list[dict]]) -> dict:
    """Follow a shard's objects through the chain.

    ``present``: for each stage in CHAIN, the uids in its output; ``ledgers``: each
    stage's failure rows (uid, reason, detail). Returns the per-stage counts and, for
    every object that left, its stage, reason and detail.
    """
    by_uid = {stage: {} for stage in CHAIN}
    for stage, rows in ledgers.items():
        for row in rows:
            by_uid[stage].setdefault(row["uid"], []).append(row)
    stages, left = {}, {}
    remaining = list(uids)
    for stage in CHAIN:
        out = [uid for uid in remaining if uid in present.get(stage, set())]
        gone = [uid for uid in remaining if uid not in present.get(stage, set())]
        for uid in gone:
            reason, detail = _first_reason(by_uid[stage].get(uid, []))
            left[uid] = {"stage": stage, "reason": reason, "detail": detail}
        # Rows of objects that did come out: a flag, or views that failed while the others went on.
        flagged = Counter(r["reason"] for uid in out for r in by_uid[stage].get(uid, []))
        stages[stage] = {
            "in": len(remaining),
            "out": len(out),
            "failed": dict(sorted(Counter(left[uid]["reason"] for uid in gone).items())),
            "flagged": dict(sorted(flagged.items())),
        }
        remaining = out
    return {"objects": len(uids), "stages": stages, "left": left}


def merge_accounts(accounts: list[dict], manifest_failures: list[dict], manifest_objects: int) -> dict:
    """The dataset's summary from its shards' accounts and the manifest's ledger."""
    manifest_failed = Counter(row["reason"] for row in manifest_failures)
    stages = {
        "manifest": {
            "in": manifest_objects + sum(manifest_failed.values()),
            "out": manifest_objects,
            "failed": dict(sorted(manifest_failed.items())),
            "flagged": {},
        }
    }
    for stage in CHAIN:
        failed, flagged = Counter(), Counter()
        for account in accounts:
            failed.update(account["stages"][stage]["failed"])
            flagged.update(account["stages"][stage]["flagged"])
        stages[stage] = {
            "in": sum(a["stages"][stage]["in"] for a in accounts),
            "out": sum(a["stages"][stage]["out"] for a in accounts),
            "failed": dict(sorted(failed.items())),
            "flagged": dict(sorted(flagged.items())),
        }
    objects_in = stages["manifest"]["in"]
    triplets_out = stages["triplets"]["out"]
    objects_failed = sum(sum(s["failed"].values()) for s in stages.values())
    adds_up = objects_in == triplets_out + objects_failed and all(
        s["in"] == s["out"] + sum(s["failed"].values()) for s in stages.values()
    )
    return {
        "objects_in": objects_in,
        "triplets_out": triplets_out,
        "objects_failed": objects_failed,
        "adds_up": adds_up,
        "stages": stages,
        "failures": {stage: s["failed"] for stage, s in stages.items() if s["failed"]},
        "flags": {stage: s["flagged"] for stage, s in stages.items() if s["flagged"]},
    }
