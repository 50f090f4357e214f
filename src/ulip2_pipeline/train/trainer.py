"""Contrastive training of Point-BERT against frozen CLIP image and text features.

Only the 3D encoder (with its projection) and the loss's logit scale train. The
image and text towers are frozen: by default their features were precomputed by the
embed stage; with ``towers: online`` the frozen CLIP encodes each batch's view and
caption here.

A run is identified by a fingerprint (its output settings, the world size, the
towers' weights and every input shard's content digest). Every epoch ends with a
checkpoint holding that fingerprint, the weights, optimiser and scheduler, gradients
accumulated towards the next step, and every rank's random streams; a run resumes a
checkpoint only when the fingerprints match, so a resumed run ends where an
uninterrupted one would. Under torchrun every rank runs the same number of steps on
its own share of the data (``epoch_plan``), gradients (the logit scale's too) are
averaged by DDP, and BatchNorm statistics are averaged at the end of every epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from ulip2_pipeline.atomic import atomic_path
from ulip2_pipeline.config import OBJECT_TEXT_SOURCES
from ulip2_pipeline.devices import pick_device
from ulip2_pipeline.encoders.registry import build, config_dict, named_config, prefix_points
from ulip2_pipeline.models.clip import load_configured_clip
from ulip2_pipeline.quality.filters import QualityFilter
from ulip2_pipeline.settings import ClipSettings, TrainSettings
from ulip2_pipeline.train import distributed
from ulip2_pipeline.train.augment import augment
from ulip2_pipeline.train.checkpoint import load_matching, restore_rng, rng_state, save_atomic
from ulip2_pipeline.train.fingerprint import run_fingerprint
from ulip2_pipeline.train.loader import Batch, TripletDataset
from ulip2_pipeline.train.loss import UlipLoss
from ulip2_pipeline.train.zeroshot import TEMPLATES

log = logging.getLogger(__name__)

# With text_source view_or_object, the probability that a sample's text is its object's caption (not its view's).
OBJECT_CAPTION_PROB = 0.5


def frozen_towers(embed: ClipSettings, device: torch.device):
    """The frozen CLIP (the one the embed stage used), every parameter out of autograd."""
    # The precision the embed stage encoded with, so online towers and class texts match the stored features.
    clip = load_configured_clip(embed, device)
    clip.model.eval()
    for parameter in clip.model.parameters():
        parameter.requires_grad_(False)
    return clip


def tower_fingerprint(clip) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(clip.model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def encode_texts(clip, texts: list[str]) -> torch.Tensor:
    with torch.inference_mode():
        return clip.model.encode_text(clip.tokenizer(texts).to(clip.device)).float()


def parameter_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms and other 1-d parameters (and the logit scale)."""
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(warmup_steps: int, total_steps: int, lr: float, min_lr: float):
    """Linear warm-up, then cosine decay to ``min_lr`` (as a factor of ``lr``)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return (min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))) / lr

    return factor


def derived_seed(*key) -> int:
    """A 32-bit seed from ``key`` (the same on every machine and in every process)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0])


def state_fingerprint(*modules: torch.nn.Module) -> str:
    """sha256 of the modules' parameters and buffers: equal weights, equal digest."""
    digest = hashlib.sha256()
    for index, module in enumerate(modules):
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(f"{index}.{name}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class ContrastiveModel(torch.nn.Module):
    """Encoder and loss as one module, so DDP synchronises the logit scale with the encoder."""

    def __init__(self, encoder: torch.nn.Module, loss: UlipLoss, amp: bool):
        super().__init__()
        self.encoder, self.loss, self.amp = encoder, loss, amp

    def forward(self, xyz, rgb, image, text) -> dict:
        with torch.autocast(xyz.device.type, dtype=torch.bfloat16, enabled=self.amp):
            features = self.encoder(xyz, rgb)
        return self.loss(features, image, text)


class Trainer:
    def __init__(
        self,
        triplet_paths,
        embed_paths,
        settings: TrainSettings,
        embed: ClipSettings,
        up_axis: str,
        out_dir,
        quality: QualityFilter | None = None,
    ):
        self.settings, self.up_axis, self.out_dir = settings, up_axis, Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(settings.device)
        self.rank, self.world = distributed.start(self.device)
        # The same initial weights on every rank; then each rank its own augmentation and dropout.
        torch.manual_seed(settings.seed)
        random.seed(settings.seed)
        np.random.seed(settings.seed)
        self.clip = frozen_towers(embed, self.device)
        self.tower_hash = tower_fingerprint(self.clip)
        embed_dim = self.class_text_features(["probe"]).shape[-1]
        self.encoder_config = named_config(settings.model, embed_dim)
        self.encoder = build(self.encoder_config).to(self.device)
        self.loss = UlipLoss().to(self.device)
        trainable = torch.nn.ModuleDict({"encoder": self.encoder, "loss": self.loss})
        self.optimizer = torch.optim.AdamW(
            parameter_groups(trainable, settings.weight_decay), lr=settings.lr, betas=(0.9, 0.98), eps=1e-8
        )
        self.model = ContrastiveModel(self.encoder, self.loss, self.device.type == "cuda" and settings.amp)
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False,
            )  # BatchNorm statistics are averaged per epoch instead
        torch.manual_seed(derived_seed(settings.seed, 1, self.rank))
        random.seed(derived_seed(settings.seed, 2, self.rank))
        np.random.seed(derived_seed(settings.seed, 3, self.rank))
        self.generators = {
            "text": random.Random(derived_seed(settings.seed, 4, self.rank)),
            "augment": torch.Generator().manual_seed(derived_seed(settings.seed, 5, self.rank)),
        }
        self.dataset = TripletDataset(
            triplet_paths,
            None if settings.towers == "online" else embed_paths,
            num_points=settings.num_points,
            batch_size=settings.batch_size,
            shuffle_buffer=settings.shuffle_buffer,
            seed=settings.seed,
            holdout_fraction=settings.holdout_fraction,
            split="train",
            with_image_bytes=settings.towers == "online",
            rank=self.rank,
            world=self.world,
            object_captions=settings.text_source in OBJECT_TEXT_SOURCES,
            quality=quality,
        )
        if quality is not None:
            log.info("quality filter: %s; %d training objects stay", quality.describe(), self.dataset.num_objects)
        self.batches_per_epoch = len(self.dataset)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{self.dataset.num_objects} training objects in {len(triplet_paths)} shards "
                f"(holdout_fraction {settings.holdout_fraction}) cannot feed {self.world} rank(s)"
            )
        total = self.batches_per_epoch * settings.epochs // settings.accumulate
        if total == 0:
            raise ValueError(
                f"accumulate {settings.accumulate} is more than the {self.batches_per_epoch * settings.epochs} "
                "batches of the whole run: no optimiser step would be taken"
            )
        warmup = max(1, int(self.batches_per_epoch * settings.warmup_epochs / settings.accumulate))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(warmup, total, settings.lr, settings.min_lr)
        )
        self.categories = self._categories(triplet_paths)
        self.category_features = self._category_template_features()
        self.fingerprint = run_fingerprint(
            {
                "train": settings.as_params(),
                "embed": embed.as_params(),
                "up_axis": up_axis,
                "world_size": self.world,
                "towers_sha256": self.tower_hash,
                **({"quality": quality.as_config()} if quality is not None and quality.active else {}),
            },
            {
                "triplets": list(triplet_paths),
                "embed": list(embed_paths or []),
                **({"duplicates": [quality.duplicates_path]} if quality and quality.duplicates_path else {}),
            },
        )
        self.epoch, self.step, self.pending = 0, 0, 0  # pending: micro-batches accumulated towards the next step
        self.history: list[dict] = []
        log.info(
            "%d training objects, %d batches of %d per rank per epoch, %d rank(s); %d optimiser steps",
            self.dataset.num_objects,
            self.batches_per_epoch,
            settings.batch_size,
            self.world,
            total,
        )
        self._resume()

    # --- text ---------------------------------------------------------------------------------------------
    def class_text_features(self, names: list[str]) -> torch.Tensor:
        return encode_texts(self.clip, names)

    def _categories(self, triplet_paths) -> list[str]:
        names = set()
        for path in triplet_paths:
            names |= {c for c in pq.read_table(path, columns=["category"]).column("category").to_pylist() if c}
        return sorted(names)

    def _category_template_features(self) -> torch.Tensor | None:
        """(classes, templates, D) frozen text features of every category under every template."""
        if self.settings.text_source not in ("category", "mix") or not self.categories:
            return None
        rows = [encode_texts(self.clip, [t.format(c) for t in TEMPLATES]) for c in self.categories]
        return torch.stack(rows)

    def text_targets(self, batch: Batch, generator: random.Random) -> torch.Tensor:
        """Per sample: its kept caption's feature, or a random template of its category, or a mix; or its object's
        caption (the fuse stage's; the view's caption where the object has none), or an even draw between the two.
        Every draw comes from ``generator`` (checkpointed), so a resumed run draws what an uninterrupted one would."""
        source, n = self.settings.text_source, len(batch["uid"])
        use_category = [
            source == "category" or (source == "mix" and generator.random() < self.settings.mix_category_prob)
            for _ in range(n)
        ]
        use_object = [
            source == "object" or (source == "view_or_object" and generator.random() < OBJECT_CAPTION_PROB)
            for _ in range(n)
        ]
        object_features = None
        if self.settings.towers == "online":
            caption_features = encode_texts(self.clip, [c or "a 3d object." for c in batch["caption"]])
            if any(use_object):
                texts = [o or c or "a 3d object." for o, c in zip(batch["object_caption"], batch["caption"])]
                object_features = encode_texts(self.clip, texts)
        else:
            caption_features = batch["text_embedding"].to(self.device)
            if any(use_object):
                object_features = batch["object_text_embedding"].to(self.device)
        rows = []
        for i in range(n):
            category = batch["category"][i]
            if use_category[i] and category in self.categories and self.category_features is not None:
                templates = self.category_features[self.categories.index(category)]
                rows.append(templates[generator.randrange(len(templates))])
            elif use_object[i]:
                rows.append(object_features[i])
            else:
                rows.append(caption_features[i])
        return torch.stack(rows).to(self.device)

    def image_targets(self, batch: Batch) -> torch.Tensor:
        if self.settings.towers != "online":
            return batch["image_embedding"].to(self.device)
        from io import BytesIO

        from PIL import Image

        with torch.inference_mode():
            pixels = torch.stack(
                [self.clip.preprocess(Image.open(BytesIO(b)).convert("RGB")) for b in batch["image_png"]]
            ).to(self.device)
            return self.clip.model.encode_image(pixels).float()

    # --- checkpoints ------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def _trainable(self) -> dict[str, torch.nn.Parameter]:
        return {f"encoder.{n}": p for n, p in self.encoder.named_parameters()} | {
            f"loss.{n}": p for n, p in self.loss.named_parameters()
        }

    def _resume(self) -> None:
        state = load_matching(self.checkpoint_path, self.fingerprint, self.device)
        if state is None:
            return
        self.encoder.load_state_dict(state["encoder"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.pending = state["epoch"], state["step"], state["pending"]
        self.history = state["history"]
        for name, parameter in self._trainable().items():
            grad = state["pending_grads"].get(name)
            parameter.grad = None if grad is None else grad.to(self.device)
        restore_rng(state["rng"][self.rank], self.generators)
        log.info(
            "resumed from %s at epoch %d (step %d, %d micro-batches pending)",
            self.checkpoint_path,
            self.epoch,
            self.step,
            self.pending,
        )

    def _checkpoint(self) -> None:
        rng = distributed.gather_objects(rng_state(self.generators))  # collective: every rank takes part
        if self.rank != 0:
            return
        # Gradients waiting for the next step are the same on every rank: the epoch's last
        # micro-batch always synchronises them.
        pending = {name: p.grad.detach().clone() for name, p in self._trainable().items() if p.grad is not None}
        save_atomic(
            {
                "fingerprint": self.fingerprint,
                "encoder": self.encoder.state_dict(),
                "loss": self.loss.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "epoch": self.epoch,
                "step": self.step,
                "pending": self.pending,
                "pending_grads": pending,
                "history": self.history,
                "encoder_config": config_dict(self.encoder_config),
                "train_config": self.settings.as_config(),
                "rng": rng,
            },
            self.checkpoint_path,
        )

    # --- the loop ---------------------------------------------------------------------------------------------
    def _micro_step(self, batch: Batch, synchronise: bool) -> dict:
        settings = self.settings
        xyz, rgb = batch["xyz"].to(self.device), batch["rgb"].to(self.device)
        if settings.augment:
            xyz, rgb = augment(
                xyz, rgb, self.up_axis, self.generators["augment"], keep_prefix=prefix_points(self.encoder_config)
            )
        image, text = self.image_targets(batch), self.text_targets(batch, self.generators["text"])
        no_sync = self.world > 1 and not synchronise
        with self.model.no_sync() if no_sync else contextlib.nullcontext():
            out = self.model(xyz, rgb, image, text)
            (out["loss"] / settings.accumulate).backward()
        self.pending += 1
        if self.pending == settings.accumulate:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.step += 1
            self.pending = 0
        return out

    def train(self, stop_after_epochs: int | None = None) -> dict:
        settings = self.settings
        epochs_run = 0
        while self.epoch < settings.epochs:
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                break
            self.model.train()
            started, sums, batches = time.perf_counter(), {}, self.dataset.epoch(self.epoch, settings.workers)
            samples = 0
            for index, batch in enumerate(batches):
                # Synchronise at each optimiser step and at the end of the epoch, so what is
                # carried into the next epoch (and the checkpoint) is the same on every rank.
                last = index == len(batches) - 1
                out = self._micro_step(batch, synchronise=last or self.pending + 1 == settings.accumulate)
                samples += len(batch["uid"])
                for key, value in out.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
            distributed.average_buffers(self.encoder)
            self.epoch += 1
            epochs_run += 1
            seconds = distributed.maximum(time.perf_counter() - started, self.device)
            record = {
                "epoch": self.epoch,
                "step": self.step,
                "lr": self.scheduler.get_last_lr()[0],
                "samples_per_s": round(samples * self.world / max(seconds, 1e-9), 1),
                **{k: round(v / len(batches), 4) for k, v in sums.items()},
            }
            self.history.append(record)
            log.info("epoch %s", json.dumps(record))
            self._checkpoint()
            self._write_curve()
        return self.finish()

    def finish(self) -> dict:
        unchanged = tower_fingerprint(self.clip) == self.tower_hash
        if not unchanged:
            raise RuntimeError("the frozen CLIP towers changed during training")
        summary = {
            "epochs": self.epoch,
            "steps": self.step,
            "towers_unchanged": unchanged,
            "world_size": self.world,
            "objects_per_epoch": self.dataset.num_objects,
            "batches_per_epoch": self.batches_per_epoch,
            "trainable_parameters": sum(p.numel() for g in self.optimizer.param_groups for p in g["params"]),
            "encoder": config_dict(self.encoder_config),
            "history": self.history,
        }
        if self.world > 1:  # each rank's own account, for checking that the ranks agree
            rank_report = {
                "rank": self.rank,
                "world_size": self.world,
                "history": self.history,
                "weights_sha256": state_fingerprint(self.encoder, self.loss),
            }
            with atomic_path(self.out_dir / f"rank{self.rank}.json") as tmp:
                tmp.write_text(json.dumps(rank_report, indent=2) + "\n")
        if self.rank == 0:
            with atomic_path(self.out_dir / "metrics.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def save_model(self, path) -> None:
        if self.rank == 0:
            save_atomic(
                {
                    "encoder": self.encoder.state_dict(),
                    "encoder_config": config_dict(self.encoder_config),
                    "train_config": self.settings.as_config(),
                    "categories": self.categories,
                },
                Path(path),
            )

    def _write_curve(self) -> None:
        if self.rank != 0 or not self.history:
            return
        keys = ["epoch", "loss", "loss_text", "loss_image", "acc_text", "acc_image", "lr"]
        lines = [",".join(keys)] + [",".join(str(h.get(k, "")) for k in keys) for h in self.history]
        (self.out_dir / "curve.csv").write_text("\n".join(lines) + "\n")
        (self.out_dir / "curve.svg").write_text(loss_curve_svg([h["loss"] for h in self.history]))


def loss_curve_svg(losses: list[float], width: int = 480, height: int = 240) -> str:
    """A dependency-free line plot of the loss per epoch."""
    pad = 30
    top, bottom = max(losses), min(losses)
    span = (top - bottom) or 1.0
    step = (width - 2 * pad) / max(1, len(losses) - 1)
    points = " ".join(
        f"{pad + i * step:.1f},{height - pad - (v - bottom) / span * (height - 2 * pad):.1f}"
        for i, v in enumerate(losses)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<polyline fill="none" stroke="steelblue" stroke-width="2" points="{points}"/>'
        f'<text x="{pad}" y="18" font-size="12">training loss per epoch: {top:.3f} to {losses[-1]:.3f}</text>'
        f'<text x="{pad}" y="{height - 8}" font-size="11">epoch 1 .. {len(losses)}</text></svg>\n'
    )
