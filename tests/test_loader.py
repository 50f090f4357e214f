"""The epoch plan and the streaming loader, on small shards in the pipeline's real schemas."""

import itertools

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from synthetic_shards import write_shards

from ulip2_pipeline.train.epoch_plan import batches_per_rank, epoch_windows
from ulip2_pipeline.train.loader import ShardError, TripletDataset

COUNTS = [16, 0, 15, 13, 9]  # 53 objects, one empty shard


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("shards"), COUNTS)


def planned_objects(counts, epoch, rank, world, batch_size, window):
    """(shard, index) of every object in this rank's batches, batch by batch."""
    batches = []
    for w in epoch_windows(counts, 7, epoch, rank, world, batch_size, window):
        stream = [(shard, i) for shard, first, end in w.segments for i in range(first, end)]
        batches += [[stream[p] for p in positions] for positions in w.batches]
    return batches


@pytest.mark.parametrize("world, batch_size, window", [(1, 4, 8), (2, 4, 8), (3, 5, 12), (4, 8, 64), (2, 6, 1)])
def test_the_plan_gives_every_rank_the_same_batches_and_each_object_at_most_once(world, batch_size, window):
    total = sum(COUNTS)
    for epoch in range(3):
        per_rank = [planned_objects(COUNTS, epoch, r, world, batch_size, window) for r in range(world)]
        assert {len(b) for b in per_rank} == {batches_per_rank(total, world, batch_size, window)}
        # The same batch sizes on every rank (DDP gathers equal shapes); none of one object.
        assert len({tuple(len(batch) for batch in b) for b in per_rank}) == 1
        assert all(len(batch) >= 2 for b in per_rank for batch in b)
        seen = [o for b in per_rank for batch in b for o in batch]
        assert len(seen) == len(set(seen))
        assert total - len(seen) == total % world <= world - 1


def test_the_plan_shuffles_shards_and_objects_each_epoch():
    epochs = [planned_objects(COUNTS, e, 0, 1, 4, 8) for e in range(3)]
    assert all(sorted(itertools.chain(*e)) == sorted(itertools.chain(*epochs[0])) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
    first_shards = [[shard for shard, _ in itertools.chain(*e)] for e in epochs]
    assert len({tuple(dict.fromkeys(order)) for order in first_shards}) > 1  # shard order changes
    assert any(len({s for s, _ in batch}) > 1 for e in epochs for batch in e)  # batches span shards


@pytest.mark.parametrize("world", [1, 2])
def test_batches_do_not_depend_on_the_number_of_workers(shards, world):
    triplets, embeds = shards
    runs = {}
    for workers in (0, 1, 2):
        ranks = [
            TripletDataset(
                triplets, embeds, num_points=128, batch_size=4, shuffle_buffer=8, seed=3, rank=r, world=world
            )
            for r in range(world)
        ]
        runs[workers] = [list(ds.epoch(1, workers=workers)) for ds in ranks]
    for workers in (1, 2):
        for rank_a, rank_b in zip(runs[0], runs[workers]):
            assert len(rank_a) == len(rank_b)
            for a, b in zip(rank_a, rank_b):
                assert a["uid"] == b["uid"]
                assert a["caption"] == b["caption"]
                for key in ("xyz", "rgb", "image_embedding", "text_embedding"):
                    assert torch.equal(a[key], b[key]), key


def test_every_object_once_per_epoch_with_its_own_view_and_embeddings(shards):
    triplets, embeds = shards
    ds = TripletDataset(triplets, embeds, num_points=128, batch_size=5, shuffle_buffer=10, seed=1)
    table = pd.concat([pd.read_parquet(p, columns=["uid", "xyz", "kept"]) for p in triplets])
    emb = pd.concat([pd.read_parquet(p) for p in embeds]).set_index("uid")
    points = {uid: np.stack(list(xyz))[:128] for uid, xyz in zip(table["uid"], table["xyz"])}
    epochs = []
    for epoch in range(2):
        batches = list(ds.epoch(epoch))
        assert len(batches) == len(ds)
        uids = []
        for batch in batches:
            assert batch["xyz"].shape[1:] == (128, 3)
            assert 0 <= batch["rgb"].min()
            assert batch["rgb"].max() <= 1
            for i, uid in enumerate(batch["uid"]):
                assert np.allclose(batch["xyz"][i].numpy(), points[uid])  # the object's own points
                row = emb.loc[uid]
                view = row["captions"].tolist().index(batch["caption"][i])
                assert np.allclose(batch["text_embedding"][i], row["caption_embeddings"][view])
                assert np.allclose(batch["image_embedding"][i], row["image_embeddings"][view])
            uids += batch["uid"]
        epochs.append(uids)
    assert sorted(epochs[0]) == sorted(epochs[1]) == sorted(table["uid"])
    assert epochs[0] != epochs[1]


def test_the_split_sides_partition_the_objects(shards):
    triplets, embeds = shards
    sides = {
        split: {
            u
            for b in TripletDataset(
                triplets, embeds, num_points=64, batch_size=2, holdout_fraction=0.3, split=split
            ).epoch(0)
            for u in b["uid"]
        }
        for split in ("train", "heldout")
    }
    assert sides["train"]
    assert sides["heldout"]
    assert not sides["train"] & sides["heldout"]
    assert len(sides["train"] | sides["heldout"]) >= sum(COUNTS) - 2  # a lone object per side may wait


def test_points_at_smaller_sizes_are_prefixes(shards):
    triplets, _ = shards
    full = next(iter(TripletDataset(triplets[:1], num_points=256, batch_size=2, shuffle_buffer=1).epoch(0)))
    small = next(iter(TripletDataset(triplets[:1], num_points=64, batch_size=2, shuffle_buffer=1).epoch(0)))
    assert full["uid"] == small["uid"]
    assert torch.equal(full["xyz"][:, :64], small["xyz"])


def test_a_window_reads_only_the_row_groups_it_needs(shards, monkeypatch):
    triplets, embeds = shards
    reads = []
    original = pq.ParquetFile.read_row_group

    def spy(self, index, *args, **kwargs):
        reads.append(index)
        return original(self, index, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("a whole shard was read"))
    ds = TripletDataset(triplets, None, num_points=64, batch_size=4, shuffle_buffer=4)
    window = ds.windows()[0]
    ds._read_window(window)
    groups_of_4 = sum(-(-(end - first) // 4) + 1 for _, first, end in window.segments)
    assert 0 < len(reads) <= groups_of_4 < sum(pq.ParquetFile(p).num_row_groups for p in triplets)


def test_empty_shards_flow_through(tmp_path):
    triplets, embeds = write_shards(tmp_path, [0, 6, 0])
    ds = TripletDataset(triplets, embeds, num_points=64, batch_size=4)
    assert len(ds) == 2
    assert [len(b["uid"]) for b in ds.epoch(0, workers=2)] == [4, 2]
    only_empty = TripletDataset(triplets[:1], embeds[:1], num_points=64, batch_size=4)
    assert len(only_empty) == 0
    assert list(only_empty.epoch(0)) == []


def test_truncated_or_foreign_files_are_a_shard_error_naming_the_file(shards, tmp_path):
    triplets, embeds = shards
    good = triplets[0].read_bytes()
    for cut in (len(good) // 2, len(good) - 5, 100):
        truncated = tmp_path / f"truncated{cut}.parquet"
        truncated.write_bytes(good[:cut])
        with pytest.raises(ShardError, match=truncated.name):
            TripletDataset([truncated])
    foreign = tmp_path / "foreign.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(foreign)
    with pytest.raises(ShardError, match="foreign.parquet.*missing columns"):
        TripletDataset([foreign])
    with pytest.raises(ShardError, match=f"{embeds[2].name}.*rows"):  # embeddings of another shard
        TripletDataset(triplets[:1], embeds[2:3])


@pytest.mark.e2e
@pytest.mark.parametrize("workers", [0, 2])
def test_the_demo_runs_shards_stream_every_object_once_per_epoch(demo_run, workers):
    workdir, config, _ = demo_run
    results = workdir / "results" / "demo"
    triplets = sorted((results / "triplets").glob("*.parquet"))
    embeds = [results / "embed" / config["embed"]["name"] / p.name for p in triplets]
    ds = TripletDataset(triplets, embeds, num_points=2048, batch_size=5, shuffle_buffer=8, seed=1)
    epochs = []
    for epoch in range(2):
        uids = []
        for batch in ds.epoch(epoch, workers=workers):
            assert batch["xyz"].shape[1:] == (2048, 3)
            assert batch["rgb"].max() <= 1.0
            assert batch["image_embedding"].shape[1] == batch["text_embedding"].shape[1]
            uids += batch["uid"]
        epochs.append(uids)
    expected = sum(pq.ParquetFile(p).metadata.num_rows for p in triplets)
    assert sorted(epochs[0]) == sorted(epochs[1])
    assert len(set(epochs[0])) == len(epochs[0]) == expected
    assert epochs[0] != epochs[1]
