"""Point-BERT, the ULIP loss, the trainer (frozen towers, fingerprinted exact resume, two ranks) and
zero-shot evaluation."""

import copy
import json
import logging
import math
import pickle
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import REPO, one_torch_thread, snakemake
from synthetic_shards import write_shards

from ulip2_pipeline.config import default_config, validate_config
from ulip2_pipeline.encoders.checkpoints import load_encoder
from ulip2_pipeline.encoders.grouping import farthest_point_sample
from ulip2_pipeline.encoders.registry import build, named_config
from ulip2_pipeline.models.tiny_models import build_tiny_clip
from ulip2_pipeline.settings import EmbedSettings, EvalSettings, TrainSettings
from ulip2_pipeline.stages.points.sampling import farthest_point_order
from ulip2_pipeline.train.augment import augment
from ulip2_pipeline.train.benchmarks import read_benchmark
from ulip2_pipeline.train.cli import build_parser, job_from_config
from ulip2_pipeline.train.launch import TrainJob, launch
from ulip2_pipeline.train.loss import LOGIT_SCALE_MAX, UlipLoss
from ulip2_pipeline.train.run import run_evaluation
from ulip2_pipeline.train.trainer import Trainer, lr_lambda, parameter_groups, state_fingerprint
from ulip2_pipeline.train.zeroshot import TEMPLATES, accuracy, class_embeddings, confusion


def test_pointbert_sizes_and_output_width():
    tiny = build(named_config("tiny", embed_dim=32))
    xyz, rgb = torch.randn(3, 512, 3), torch.rand(3, 512, 3)
    assert tiny(xyz, rgb).shape == (3, 32)
    ulip2 = named_config("ulip2", embed_dim=1280)
    assert (ulip2.width, ulip2.depth, ulip2.heads, ulip2.groups, ulip2.group_size) == (384, 18, 6, 512, 32)
    assert named_config("ulip1", 512).depth == 12
    assert build(ulip2).pc_projection.shape == (768, 1280)  # [CLS || max-pool] of width 384


def test_torch_fps_agrees_with_the_stored_fps_order():
    xyz = np.random.default_rng(0).normal(size=(600, 3)).astype(np.float32)
    ordered = xyz[farthest_point_order(xyz)]
    # On FPS-ordered input, FPS from point 0 picks the prefix: the stored order is ULIP's centres.
    picked = farthest_point_sample(torch.from_numpy(ordered)[None], 64)[0]
    assert picked.tolist() == list(range(64))


def test_loss_matches_the_formula_and_clamps_the_scale():
    torch.manual_seed(0)
    p, i, t = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    loss = UlipLoss()
    out = loss(p, i, t)
    scale = math.exp(math.log(1 / 0.07))
    pn, inn, tn = (F.normalize(x, dim=-1) for x in (p, i, t))
    labels = torch.arange(4)
    expected = (F.cross_entropy(scale * pn @ tn.T, labels) + F.cross_entropy(scale * tn @ pn.T, labels)) / 2 + (
        F.cross_entropy(scale * pn @ inn.T, labels) + F.cross_entropy(scale * inn @ pn.T, labels)
    ) / 2
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
    assert loss(p, i, t)["logit_scale"].item() == pytest.approx(100.0, rel=1e-5)
    assert loss.logit_scale.item() == pytest.approx(LOGIT_SCALE_MAX)


def test_no_weight_decay_on_biases_and_norms():
    model = build(named_config("tiny", embed_dim=16))
    decay, no_decay = parameter_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim >= 2 for p in decay["params"])
    assert decay["weight_decay"] == 0.1
    assert any("norm" in names[id(p)] for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in no_decay["params"])


def test_warmup_then_cosine_to_the_minimum():
    factor = lr_lambda(warmup_steps=10, total_steps=110, lr=3e-3, min_lr=1e-5)
    lrs = [3e-3 * factor(s) for s in range(110)]
    assert lrs[0] == pytest.approx(3e-4)
    assert lrs[9] == pytest.approx(3e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert 3e-3 * factor(110) == pytest.approx(1e-5)


def test_augmentation_keeps_the_centres_and_can_grey_the_colour():
    xyz, rgb = torch.randn(4, 256, 3), torch.rand(4, 256, 3)
    gen = torch.Generator().manual_seed(0)
    out_xyz, out_rgb = augment(xyz, rgb, "y", gen, grey_rgb_prob=1.0, keep_prefix=32)
    assert out_xyz.shape == xyz.shape
    assert torch.all(out_rgb == 0.4)
    moved = augment(
        xyz, rgb, "y", torch.Generator().manual_seed(1), grey_rgb_prob=0.0, dropout_max=0.9, keep_prefix=32
    )[0]
    # The 32 centres survive dropout: no two of them collapse onto point 0.
    assert (torch.cdist(moved[:, 1:32], moved[:, :1]).squeeze(-1) > 1e-6).all()


def test_accuracy_top1_top5_and_class_mean():
    logits = torch.tensor([[9.0, 1, 0, 0, 0, 0], [0, 9, 1, 0, 0, 0], [1, 1, -5, 1, 1, 9], [0, 8, 9, 0, 0, 0]])
    labels = torch.tensor([0, 1, 2, 1])
    result = accuracy(logits, labels, 6)
    assert result["top1"] == 50.0
    assert result["top5"] == 75.0
    assert result["class_mean"] == pytest.approx(100 * (1 + 0.5 + 0) / 3, abs=0.01)


def test_class_embeddings_average_the_normalised_templates():
    def encode(texts):
        return torch.stack([torch.tensor([len(t), 1.0, 0.0]) for t in texts])

    features = class_embeddings(encode, ["a", "bb"], templates=["{}", "x {}"])
    expected = F.normalize(
        (F.normalize(torch.tensor([1.0, 1, 0]), dim=0) + F.normalize(torch.tensor([3.0, 1, 0]), dim=0)) / 2, dim=0
    )
    assert torch.allclose(features[0], expected)
    assert len(TEMPLATES) == 64
    assert all("{}" in t for t in TEMPLATES)


def test_benchmark_readers(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "mn").mkdir()
    (tmp_path / "mn" / "modelnet40_shape_names.txt").write_text("airplane\nbathtub\n")
    with open(tmp_path / "mn" / "modelnet40_test_8192pts_fps.dat", "wb") as f:
        pickle.dump(
            [
                [rng.normal(size=(8192, 6)).astype(np.float32) for _ in range(3)],
                [np.array([1]), np.array([0]), np.array([1])],
            ],
            f,
        )
    clouds, labels, classes = read_benchmark({"format": "modelnet40_ulip", "path": str(tmp_path / "mn")}, 2048)
    assert classes == ["airplane", "bathtub"]
    assert labels == [1, 0, 1]
    assert clouds[0][0].shape == (2048, 3)
    assert np.allclose(clouds[0][1], 0.4)
    assert np.linalg.norm(clouds[0][0], axis=1).max() == pytest.approx(1.0, abs=1e-5)

    (tmp_path / "os").mkdir()
    entries = []
    for i, cat in enumerate(["chair", "mug", "chair"]):
        np.save(
            tmp_path / "os" / f"{i}.npy",
            {"xyz": rng.normal(size=(10000, 3)).astype(np.float32), "rgb": rng.random((10000, 3)).astype(np.float32)},
            allow_pickle=True,
        )
        entries.append({"category": cat, "data_path": f"{i}.npy"})
    (tmp_path / "os" / "split.json").write_text(json.dumps(entries))
    clouds, labels, classes = read_benchmark(
        {"format": "openshape", "path": str(tmp_path / "os"), "split": "split.json"}, 8192
    )
    assert classes == ["chair", "mug"]
    assert labels == [0, 1, 0]
    assert clouds[1][0].shape == (8192, 3)

    import h5py

    (tmp_path / "sonn" / "main_split").mkdir(parents=True)
    with h5py.File(tmp_path / "sonn" / "main_split" / "test_objectdataset.h5", "w") as f:
        f["data"] = rng.normal(size=(4, 2048, 3)).astype(np.float32)
        f["label"] = np.array([0, 4, 14, 4])
    clouds, labels, classes = read_benchmark({"format": "scanobjectnn", "path": str(tmp_path / "sonn")}, 2048)
    assert labels == [0, 4, 14, 4]
    assert classes[4] == "chair"
    assert len(classes) == 15


def test_the_confusion_matrix_counts_true_classes_by_top1_prediction():
    logits = torch.tensor([[9.0, 1, 0], [0, 9, 1], [1, 9, 0], [0, 1, 9], [9, 0, 1]])
    labels = torch.tensor([0, 1, 0, 2, 0])
    result = confusion(logits, labels, ["mug", "chair", "lamp"])
    assert result["confusion"] == {"classes": ["mug", "chair", "lamp"], "matrix": [[2, 1, 0], [0, 1, 0], [0, 0, 1]]}
    assert result["per_class_top1"] == {"mug": pytest.approx(66.67), "chair": 100.0, "lamp": 100.0}
    assert "lamp" not in confusion(logits[:3], labels[:3], ["mug", "chair", "lamp"])["per_class_top1"]


def small_train_cfg(**overrides) -> TrainSettings:
    """The schema's training defaults, shrunk: a tiny Point-BERT, a few epochs of small batches on one CPU thread."""
    section = {
        **default_config()["train"],
        "run": "t",
        "model": "tiny",
        "num_points": 256,
        "text_source": "mix",
        "epochs": 3,
        "batch_size": 4,
        "accumulate": 2,
        "holdout_fraction": 0.34,
        "shuffle_buffer": 8,
        "workers": 0,
        "threads": 1,
        "device": "cpu",
    }
    return TrainSettings.from_config({**section, **overrides})


def tiny_embed_settings(clip_files: dict) -> EmbedSettings:
    return EmbedSettings.from_config({**default_config()["embed"], "name": "tiny-clip", **clip_files})


@pytest.fixture(autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return tiny_embed_settings(build_tiny_clip(tmp_path_factory.mktemp("tiny-clip")))


@pytest.fixture
def shards(tmp_path):
    """44 objects in four shards, one of them empty; 32-d embeddings like the tiny CLIP's."""
    return write_shards(tmp_path / "data", [16, 0, 15, 13])


def comparable(history):
    return [{k: v for k, v in h.items() if k != "samples_per_s"} for h in history]


def test_a_resumed_run_ends_bit_identical_with_accumulation_across_epochs(tmp_path, shards, tiny_clip):
    triplets, embeds = shards
    cfg = small_train_cfg(accumulate=3, workers=1, holdout_fraction=0.0)
    straight = Trainer(triplets, embeds, cfg, tiny_clip, "y", tmp_path / "straight")
    assert straight.batches_per_epoch % 3 != 0  # an epoch ends with gradients waiting for the next step
    straight.train()
    first = Trainer(triplets, embeds, cfg, tiny_clip, "y", tmp_path / "resumed")
    first.train(stop_after_epochs=1)  # then "killed": only the checkpoint survives
    assert first.pending > 0
    resumed = Trainer(triplets, embeds, cfg, tiny_clip, "y", tmp_path / "resumed")
    assert (resumed.epoch, resumed.step, resumed.pending) == (1, first.step, first.pending)
    assert resumed.scheduler.state_dict() == first.scheduler.state_dict()
    resumed.train()
    assert state_fingerprint(straight.encoder, straight.loss) == state_fingerprint(resumed.encoder, resumed.loss)
    assert comparable(straight.history) == comparable(resumed.history)
    assert straight.step == resumed.step == straight.batches_per_epoch * 3 // 3


def test_openshapes_encoder_trains_and_its_model_loads_for_eval(tmp_path, shards, tiny_clip):
    triplets, embeds = shards
    trainer = Trainer(triplets, embeds, small_train_cfg(model="openshape_tiny", epochs=2), tiny_clip, "y", tmp_path)
    summary = trainer.train()
    assert summary["encoder"]["architecture"] == "ppat"
    assert all(math.isfinite(h["loss"]) for h in summary["history"])
    trainer.save_model(tmp_path / "model.pt")
    loaded = load_encoder(tmp_path / "model.pt", "ours")
    assert state_fingerprint(loaded) == state_fingerprint(trainer.encoder)


def test_a_checkpoint_of_another_run_is_not_resumed_and_the_log_says_what_changed(tmp_path, shards, tiny_clip, caplog):
    triplets, embeds = shards
    out = tmp_path / "run"
    Trainer(triplets, embeds, small_train_cfg(), tiny_clip, "y", out).train(stop_after_epochs=1)
    caplog.set_level(logging.INFO)
    assert Trainer(triplets, embeds, small_train_cfg(workers=1, threads=2), tiny_clip, "y", out).epoch == 1

    caplog.clear()
    changed = Trainer(triplets, embeds, small_train_cfg(lr=0.002, batch_size=5), tiny_clip, "y", out)
    assert changed.epoch == 0
    assert changed.step == 0
    assert changed.history == []
    assert "train.lr: 0.003 -> 0.002" in caplog.text
    assert "train.batch_size: 4 -> 5" in caplog.text

    caplog.clear()
    write_shards(tmp_path / "other", [16, 0, 15, 13], seed=1)  # same names, other content
    shutil.copy(tmp_path / "other" / "triplets" / "00002.parquet", triplets[2])
    assert Trainer(triplets, embeds, small_train_cfg(), tiny_clip, "y", out).epoch == 0
    assert "triplets/00002.parquet changed content" in caplog.text
    assert "train.lr" not in caplog.text


def test_only_empty_shards_is_a_clear_error(tmp_path, tiny_clip):
    triplets, embeds = write_shards(tmp_path, [0, 0])
    with pytest.raises(ValueError, match="0 training objects in 2 shards"):
        Trainer(triplets, embeds, small_train_cfg(), tiny_clip, "y", tmp_path / "run")


def test_eval_reports_the_confusion_matrix_with_an_empty_shard_among_the_inputs(tmp_path, shards, tiny_clip):
    triplets, embeds = shards
    trainer = Trainer(triplets, embeds, small_train_cfg(epochs=1), tiny_clip, "y", tmp_path / "run")
    trainer.train()
    trainer.save_model(tmp_path / "model.pt")
    report = run_evaluation(
        tmp_path / "model.pt",
        EvalSettings.from_config(
            {
                **default_config()["eval"],
                "benchmarks": [{"name": "heldout", "format": "demo_heldout"}],
                "batch_size": 8,
                "device": "cpu",
            }
        ),
        tiny_clip,
        small_train_cfg().num_points,
        small_train_cfg().holdout_fraction,
        triplets,
        tmp_path / "zero_shot.json",
        embed_paths=embeds,
    )
    written = json.loads((tmp_path / "zero_shot.json").read_text())
    assert (written["checkpoint_format"], written["text_precision"]) == ("ours", "fp32")
    assert written["retrieval"]["objects"] == written["benchmarks"]["heldout"]["samples"]
    assert set(written["retrieval"]["text"]) >= {"r1", "r5", "r10", "median_rank"}
    heldout = written["benchmarks"]["heldout"]
    assert heldout == json.loads(json.dumps(report["benchmarks"]["heldout"]))
    matrix, classes = heldout["confusion"]["matrix"], heldout["confusion"]["classes"]
    assert len(matrix) == len(classes) == heldout["classes"]
    assert all(len(row) == len(classes) for row in matrix)
    assert sum(map(sum, matrix)) == heldout["samples"]
    assert sum(matrix[i][i] for i in range(len(classes))) == round(heldout["top1"] * heldout["samples"] / 100)
    for i, name in enumerate(classes):
        assert heldout["per_class_top1"][name] == pytest.approx(100 * matrix[i][i] / sum(matrix[i]), abs=0.01)


@pytest.mark.slow
def test_two_cpu_ranks_train_the_same_weights_and_resume(tmp_path, shards, tiny_clip):
    triplets, embeds = shards
    out = tmp_path / "run"
    job = TrainJob(
        triplets=[str(p) for p in triplets],
        embed=[str(p) for p in embeds],
        train=small_train_cfg(epochs=2, gpus=2, accumulate=3, holdout_fraction=0.0),
        embed_settings=tiny_clip,
        up_axis="y",
        out_dir=str(out),
        model=str(out / "model.pt"),
        log=str(out / "train.log"),
    )
    launch(job)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["history"] == ranks[1]["history"]
    assert len(ranks[0]["history"]) == 2
    metrics = json.loads((out / "metrics.json").read_text())
    # 44 objects, 22 per rank, batches of 4: 5 of 4 and one of 2 per rank; 12 micro-batches, 3 per step.
    assert metrics["world_size"] == 2
    assert metrics["batches_per_epoch"] == 6
    assert metrics["steps"] == 4
    saved = torch.load(out / "model.pt", weights_only=False)["encoder"]
    assert len(torch.load(out / "checkpoint.pt", weights_only=False)["rng"]) == 2
    launch(job)  # finished: both ranks resume at the last epoch and agree again
    assert "resumed from" in (out / "train.log").read_text()
    again = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert again[0]["weights_sha256"] == again[1]["weights_sha256"] == ranks[0]["weights_sha256"]
    assert all(torch.equal(v, torch.load(out / "model.pt", weights_only=False)["encoder"][k]) for k, v in saved.items())


def test_the_command_line_takes_the_config_its_overrides_and_the_results_layout(tmp_path, monkeypatch):
    results = tmp_path / "results" / "demo"
    write_shards(results, [3, 2])
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(
        [
            "--config",
            str(REPO / "config.yaml"),
            "--gpus",
            "2",
            "--set",
            "train.epochs=5",
            "--set",
            "train.text_source=mix",
        ]
    )
    job = job_from_config(args)
    assert job.train.epochs == 5
    assert job.train.text_source == "mix"
    assert job.train.gpus == 2
    assert job.train.accumulate == 1  # schema defaults filled in
    assert job.triplets == ["results/demo/triplets/00000.parquet", "results/demo/triplets/00001.parquet"]
    assert job.embed == ["results/demo/embed/tiny-clip/00000.parquet", "results/demo/embed/tiny-clip/00001.parquet"]
    assert job.out_dir == "results/demo/train/demo-category"
    assert job.model.endswith("demo-category/model.pt")
    assert job.up_axis == "y"
    assert job.embed_settings.arch == "ulip2-tiny-ViT-bigG-14"


@pytest.fixture(scope="module")
def demo_inputs(demo_run):
    workdir, config, _ = demo_run
    results = workdir / "results" / "demo"
    triplets = sorted((results / "triplets").glob("*.parquet"))
    embeds = [results / "embed" / config["embed"]["name"] / p.name for p in triplets]
    embed = validate_config(copy.deepcopy(config))["embed"]  # the demo's embed section, defaults filled in
    for key in ("pretrained", "arch_config"):
        embed[key] = str(workdir / embed[key])
    return triplets, embeds, EmbedSettings.from_config(embed)


@pytest.mark.e2e
@pytest.mark.parametrize("towers", ["precomputed", "online"])
def test_only_the_encoder_trains_and_the_towers_never_change(tmp_path, demo_inputs, towers):
    triplets, embeds, embed_cfg = demo_inputs
    trainer = Trainer(
        triplets, embeds, small_train_cfg(epochs=1, towers=towers, num_points=1024), embed_cfg, "y", tmp_path
    )
    before = {k: v.clone() for k, v in trainer.clip.model.state_dict().items()}
    encoder_before = {k: v.clone() for k, v in trainer.encoder.state_dict().items()}
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in trainer.clip.model.parameters())
    assert all(not p.requires_grad for p in trainer.clip.model.parameters())
    summary = trainer.train()
    assert summary["towers_unchanged"]
    assert summary["steps"] >= 1
    after = trainer.clip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(encoder_before[k], v) for k, v in trainer.encoder.state_dict().items())
    assert (tmp_path / "metrics.json").exists()
    assert (tmp_path / "curve.svg").exists()


@pytest.mark.e2e
def test_the_train_rule_runs_two_ranks_under_torchrun(demo_run, tmp_path):
    """The demo's finished run, copied: asking for two ranks reruns training, and only training."""
    workdir, config, _ = demo_run
    copy = tmp_path / "demo"
    shutil.copytree(workdir, copy, symlinks=True)
    changed = yaml.safe_load((copy / "config.yaml").read_text())
    changed["train"].update(gpus=2, epochs=2)
    (copy / "config.yaml").write_text(yaml.safe_dump(changed))
    model = f"results/demo/train/{config['train']['run']}/model.pt"
    result = snakemake(copy, model, "--resources", "gpu=2")
    log = (copy / "logs" / "demo" / "train" / f"{config['train']['run']}.log").read_text()
    assert "starting 2 ranks" in log
    assert "rank 1" in log
    run = copy / "results" / "demo" / "train" / config["train"]["run"]
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["history"] == ranks[1]["history"]
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2
    assert "train_run" in result.stdout + result.stderr
    assert "embed_shard" not in result.stdout + result.stderr
