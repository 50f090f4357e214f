"""Two DDP ranks (gloo, CPU) against one process, on the same global batches.

Each scenario builds a fresh ``Trainer`` (tiny Point-BERT, ``UlipLoss``, the model wrapped as training wraps
it: ``ContrastiveModel``, inside ``DistributedDataParallel`` on two ranks), drives it through
``Trainer._micro_step`` with fixed random inputs, and captures the gradients when the optimiser steps. The
one-rank run takes each whole global batch; each of the two ranks takes its half.

``gather_with_grad`` gives every rank all rows of the global batch, its own rows keeping their gradient, so
every rank computes the one-rank loss; each rank's encoder gradient is its own rows' share of the one-rank
gradient, and DDP averages the shares, so world size times the averaged gradient is the one-rank gradient.
Every rank already holds the whole logit-scale gradient, so the averaged one equals the one-rank one (and
would equal it unsynchronised too: one scenario weights each rank's by rank + 1 to see that DDP averages it).
Last, ``distributed.average_buffers`` must leave every rank the mean of the ranks' BatchNorm statistics.

The encoder runs in eval mode while gradients flow: BatchNorm then normalises with its running statistics,
not with those of the batch (8 rows in one process, 4 + 4 on two ranks), and DropPath (random per rank) is
off, so both runs compute the same function of the same rows.
"""

import os
import socket
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import one_torch_thread
from synthetic_shards import write_shards
from test_train import small_train_cfg, tiny_embed_settings

from ulip2_pipeline.models.tiny_models import build_tiny_clip
from ulip2_pipeline.train import distributed
from ulip2_pipeline.train.trainer import Trainer

pytestmark = pytest.mark.slow  # two gloo ranks start once for the module (about 25 s)

WORLD = 2
ROWS_PER_RANK = 4
POINTS = 128
EMBED_DIM = 32  # the tiny CLIP's width
FLOAT32 = {"rtol": 1e-4, "atol": 1e-6}
RANKS_TIMEOUT_S = 180
LOSS_KEYS = ("loss", "loss_text", "loss_image", "acc_text", "acc_image", "logit_scale")


def global_batch(seed: int) -> dict:
    """A batch as the loader yields it (precomputed features, no categories), from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    rows = WORLD * ROWS_PER_RANK
    return {
        "uid": [f"object{seed}_{i}" for i in range(rows)],
        "category": [None] * rows,
        "xyz": torch.randn(rows, POINTS, 3, generator=generator),
        "rgb": torch.rand(rows, POINTS, 3, generator=generator),
        "image_embedding": torch.randn(rows, EMBED_DIM, generator=generator),
        "text_embedding": torch.randn(rows, EMBED_DIM, generator=generator),
    }


def share_of_rank(batch: dict, rank: int, world: int) -> dict:
    rows = len(batch["uid"]) // world
    return {key: value[rank * rows : (rank + 1) * rows] for key, value in batch.items()}


def gradients_at_the_optimiser_step(trainer: Trainer) -> dict:
    """Filled, when the trainer's optimiser steps, with every trainable parameter's gradient by name."""
    captured = {}

    def capture(optimizer, args, kwargs):
        captured.update(
            {name: p.grad.detach().clone() for name, p in trainer._trainable().items() if p.grad is not None}
        )

    trainer.optimizer.register_step_pre_hook(capture)
    return captured


def one_optimiser_step(trainer: Trainer, batches: list[dict], rank: int, world: int) -> dict:
    """The trainer's micro-steps over this rank's share of ``batches``, synchronising only on the last."""
    trainer.encoder.eval()
    gradients = gradients_at_the_optimiser_step(trainer)
    losses = []
    for index, batch in enumerate(batches):
        out = trainer._micro_step(share_of_rank(batch, rank, world), synchronise=index == len(batches) - 1)
        losses.append({key: out[key].detach().clone() for key in LOSS_KEYS})
    assert trainer.step == 1
    return {"losses": losses, "gradients": gradients}


def single_batch_step(trainer: Trainer, rank: int, world: int) -> dict:
    return one_optimiser_step(trainer, [global_batch(1)], rank, world)


def two_micro_batch_step(trainer: Trainer, rank: int, world: int) -> dict:
    return one_optimiser_step(trainer, [global_batch(2), global_batch(3)], rank, world)


def rank_weighted_scale_step(trainer: Trainer, rank: int, world: int) -> dict:
    """As ``single_batch_step``, with this rank's logit-scale gradient weighted by rank + 1 before DDP sees it."""
    trainer.loss.logit_scale.register_hook(lambda grad: grad * (rank + 1))
    return single_batch_step(trainer, rank, world)


def averaged_batchnorm_statistics(trainer: Trainer, rank: int, world: int) -> dict:
    """Rank-specific running statistics, then ``distributed.average_buffers``: both, by buffer name."""
    generator = torch.Generator().manual_seed(100 + rank)
    before = {}
    with torch.no_grad():
        for name, buffer in trainer.encoder.named_buffers():
            if buffer.is_floating_point():
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
                before[name] = buffer.clone()
    distributed.average_buffers(trainer.encoder)
    after = {name: buffer.clone() for name, buffer in trainer.encoder.named_buffers() if name in before}
    return {"before": before, "after": after}


SCENARIOS = {
    "single_batch": (1, single_batch_step),
    "two_micro_batches": (2, two_micro_batch_step),
    "rank_weighted_scale": (1, rank_weighted_scale_step),
    "batchnorm": (1, averaged_batchnorm_statistics),
}


def run_scenarios(setup: dict, rank: int, world: int) -> dict:
    """Every scenario on a fresh Trainer; a scenario that raises records its traceback instead."""
    results = {}
    for name, (accumulate, scenario) in SCENARIOS.items():
        cfg = small_train_cfg(text_source="captions", augment=False, holdout_fraction=0.0, accumulate=accumulate)
        try:
            trainer = Trainer(
                setup["triplets"],
                setup["embeds"],
                cfg,
                setup["clip"],
                "y",
                Path(setup["out"]) / f"{name}-world{world}-rank{rank}",
            )
            results[name] = scenario(trainer, rank, world)
        except Exception:
            results[name] = {"error": traceback.format_exc()}
    return results


def rank_process(rank: int, world: int, port: int, setup: dict) -> None:
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
    )
    results = run_scenarios(setup, rank, world)
    torch.save(results, Path(setup["out"]) / f"rank{rank}.pt")
    distributed.finish()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(world: int, setup: dict) -> list[dict]:
    """Every scenario on ``world`` spawned gloo ranks; each rank's results."""
    context = mp.start_processes(
        rank_process, args=(world, free_port(), setup), nprocs=world, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + RANKS_TIMEOUT_S
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{world} ranks still running after {RANKS_TIMEOUT_S} s")
    return [torch.load(Path(setup["out"]) / f"rank{rank}.pt") for rank in range(world)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("rank-parity")
    triplets, embeds = write_shards(root / "data", [WORLD * ROWS_PER_RANK], points=POINTS, dim=EMBED_DIM)
    clip = tiny_embed_settings(build_tiny_clip(root / "tiny-clip"))
    return {"triplets": [str(p) for p in triplets], "embeds": [str(p) for p in embeds], "clip": clip, "out": str(root)}


@pytest.fixture(scope="module")
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def one_rank(setup, one_thread) -> dict:
    return run_scenarios(setup, rank=0, world=1)


@pytest.fixture(scope="module")
def two_ranks(setup) -> list[dict]:
    return run_ranks(WORLD, setup)


def result(results: dict, scenario: str, who: str) -> dict:
    outcome = results[scenario]
    if "error" in outcome:
        pytest.fail(f"{who} failed in {scenario}:\n{outcome['error']}")
    return outcome


def assert_same_losses(actual: list[dict], expected: list[dict], who: str) -> None:
    assert len(actual) == len(expected)
    for index, (got, want) in enumerate(zip(actual, expected)):
        for key in LOSS_KEYS:
            torch.testing.assert_close(
                got[key], want[key], **FLOAT32, msg=lambda m, k=key: f"{who}, micro-batch {index}, {k}: {m}"
            )


def assert_gradients(actual: dict, expected: dict, factor: float, prefix: str, who: str) -> None:
    """``factor`` times ``actual`` is ``expected``, for every gradient whose name starts with ``prefix``."""
    wanted = sorted(name for name in expected if name.startswith(prefix))
    got = sorted(name for name in actual if name.startswith(prefix))
    assert wanted, f"the one-rank run has no gradients named {prefix}*"
    assert got == wanted, f"{who}: gradients of {len(got)} {prefix}* parameters, expected {len(wanted)}"
    for name in wanted:
        torch.testing.assert_close(
            factor * actual[name],
            expected[name],
            **FLOAT32,
            msg=lambda m, n=name: f"{who}, {factor:.4g} x gradient of {n}: {m}",
        )


def test_every_rank_computes_the_one_rank_loss_of_the_global_batch(one_rank, two_ranks):
    expected = result(one_rank, "single_batch", "one rank")["losses"]
    for rank, results in enumerate(two_ranks):
        assert_same_losses(result(results, "single_batch", f"rank {rank}")["losses"], expected, f"rank {rank}")


def test_world_size_times_the_averaged_encoder_gradient_is_the_one_rank_gradient(one_rank, two_ranks):
    expected = result(one_rank, "single_batch", "one rank")["gradients"]
    for rank, results in enumerate(two_ranks):
        actual = result(results, "single_batch", f"rank {rank}")["gradients"]
        assert_gradients(actual, expected, WORLD, "encoder.", f"rank {rank}")


def test_the_averaged_logit_scale_gradient_is_the_one_rank_gradient(one_rank, two_ranks):
    expected = result(one_rank, "single_batch", "one rank")["gradients"]
    for rank, results in enumerate(two_ranks):
        actual = result(results, "single_batch", f"rank {rank}")["gradients"]
        assert_gradients(actual, expected, 1.0, "loss.logit_scale", f"rank {rank}")


def test_the_logit_scale_gradient_is_averaged_across_ranks(one_rank, two_ranks):
    """Every rank holds the whole logit-scale gradient, so an unsynchronised scale would pass the test above:
    here rank r's is weighted by r + 1 first, and every rank must end with the mean weight's share."""
    expected = result(one_rank, "rank_weighted_scale", "one rank")["gradients"]
    mean_weight = sum(rank + 1 for rank in range(WORLD)) / WORLD
    for rank, results in enumerate(two_ranks):
        actual = result(results, "rank_weighted_scale", f"rank {rank}")["gradients"]
        assert_gradients(actual, expected, 1 / mean_weight, "loss.logit_scale", f"rank {rank}")


def test_two_micro_batches_accumulated_without_sync_on_the_first_match_one_rank(one_rank, two_ranks):
    expected = result(one_rank, "two_micro_batches", "one rank")
    for rank, results in enumerate(two_ranks):
        actual = result(results, "two_micro_batches", f"rank {rank}")
        assert_same_losses(actual["losses"], expected["losses"], f"rank {rank}")
        assert_gradients(actual["gradients"], expected["gradients"], WORLD, "encoder.", f"rank {rank}")
        assert_gradients(actual["gradients"], expected["gradients"], 1.0, "loss.logit_scale", f"rank {rank}")


def test_average_buffers_gives_every_rank_the_mean_of_the_ranks_batchnorm_statistics(two_ranks):
    outcomes = [result(results, "batchnorm", f"rank {rank}") for rank, results in enumerate(two_ranks)]
    names = sorted(outcomes[0]["before"])
    assert any(name.endswith("running_mean") for name in names)
    assert any(n.endswith("running_var") for n in names)
    for name in names:
        assert not torch.equal(outcomes[0]["before"][name], outcomes[1]["before"][name])
        mean = torch.stack([outcome["before"][name] for outcome in outcomes]).mean(0)
        for rank, outcome in enumerate(outcomes):
            torch.testing.assert_close(
                outcome["after"][name], mean, **FLOAT32, msg=lambda m, n=name, r=rank: f"rank {r}, {n}: {m}"
            )
