"""Contrastive training of Point-BERT against frozen CLIP image and text features.

Only the 3D encoder (with its projection) and the loss's logit scale train. The
image and text towers are frozen: by default their features were precomputed by the
embed stage; with ``towers: online`` the frozen CLIP encodes each batch's view and
caption here. Checkpoints every epoch hold the optimiser, scheduler and RNG states,
so a killed run resumes where it stopped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from ..atomic import atomic_path
from ..devices import pick_device
from ..loader import TripletDataset
from ..rank.clip import load_clip
from ..splits import holdout
from .augment import augment
from .loss import UlipLoss
from .pointbert import PointBert, PointBertConfig
from .zeroshot import TEMPLATES

log = logging.getLogger(__name__)


def frozen_towers(embed_cfg: dict, device: torch.device):
    """The frozen CLIP (the one the embed stage used), every parameter out of autograd."""
    clip = load_clip(embed_cfg["arch"], embed_cfg["pretrained"], embed_cfg.get("arch_config"), device)
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


def count_training_objects(triplet_paths, holdout_fraction: float) -> int:
    total = 0
    for path in triplet_paths:
        uids = pq.read_table(path, columns=["uid"]).column("uid").to_pylist()
        total += sum(1 for uid in uids if not holdout(uid, holdout_fraction))
    return total


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _distributed() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Trainer:
    def __init__(self, triplet_paths, embed_paths, cfg: dict, embed_cfg: dict, up_axis: str, out_dir):
        self.cfg, self.up_axis, self.out_dir = cfg, up_axis, Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rank, self.world = _distributed()
        self.device = pick_device(cfg["device"])
        torch.manual_seed(cfg["seed"])
        random.seed(cfg["seed"])
        np.random.seed(cfg["seed"])
        self.clip = frozen_towers(embed_cfg, self.device)
        self.tower_hash = tower_fingerprint(self.clip)
        embed_dim = self.class_text_features(["probe"]).shape[-1]
        self.encoder_config = PointBertConfig.named(cfg["model"], embed_dim)
        self.encoder = PointBert(self.encoder_config).to(self.device)
        self.loss = UlipLoss().to(self.device)
        trainable = torch.nn.ModuleDict({"encoder": self.encoder, "loss": self.loss})
        self.optimizer = torch.optim.AdamW(parameter_groups(trainable, cfg["weight_decay"]), lr=cfg["lr"],
                                           betas=(0.9, 0.98), eps=1e-8)
        self.model = self.encoder
        if self.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(self.encoder)
        self.dataset = TripletDataset(triplet_paths, None if cfg["towers"] == "online" else embed_paths,
                                      num_points=cfg["num_points"], shuffle_buffer=cfg["shuffle_buffer"],
                                      seed=cfg["seed"], holdout_fraction=cfg["holdout_fraction"], split="train",
                                      with_image_bytes=cfg["towers"] == "online")
        objects = count_training_objects(triplet_paths, cfg["holdout_fraction"])
        per_step = cfg["batch_size"] * cfg["accumulate"] * self.world
        self.steps_per_epoch = max(1, objects // per_step)
        total = self.steps_per_epoch * cfg["epochs"]
        warmup = max(1, int(self.steps_per_epoch * cfg["warmup_epochs"]))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer,
                                                           lr_lambda(warmup, total, cfg["lr"], cfg["min_lr"]))
        self.categories = self._categories(triplet_paths)
        self.category_features = self._category_template_features()
        self.epoch, self.step = 0, 0
        self.history: list[dict] = []
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
        if self.cfg["text_source"] == "captions" or not self.categories:
            return None
        rows = [encode_texts(self.clip, [t.format(c) for t in TEMPLATES]) for c in self.categories]
        return torch.stack(rows)

    def text_targets(self, batch: dict, generator: random.Random) -> torch.Tensor:
        """Per sample: its kept caption's feature, or a random template of its category, or a mix."""
        source, n = self.cfg["text_source"], len(batch["uid"])
        use_category = [source == "category" or (source == "mix" and generator.random() < self.cfg["mix_category_prob"])
                        for _ in range(n)]
        if self.cfg["towers"] == "online":
            caption_features = encode_texts(self.clip, [c or "a 3d object." for c in batch["caption"]])
        else:
            caption_features = batch["text_embedding"].to(self.device)
        rows = []
        for i in range(n):
            category = batch["category"][i]
            if use_category[i] and category in self.categories and self.category_features is not None:
                templates = self.category_features[self.categories.index(category)]
                rows.append(templates[generator.randrange(len(templates))])
            else:
                rows.append(caption_features[i])
        return torch.stack(rows).to(self.device)

    def image_targets(self, batch: dict) -> torch.Tensor:
        if self.cfg["towers"] != "online":
            return batch["image_embedding"].to(self.device)
        from io import BytesIO

        from PIL import Image

        with torch.inference_mode():
            pixels = torch.stack([self.clip.preprocess(Image.open(BytesIO(b)).convert("RGB"))
                                  for b in batch["image_png"]]).to(self.device)
            return self.clip.model.encode_image(pixels).float()

    # --- checkpoints ------------------------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / "checkpoint.pt"

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        self.encoder.load_state_dict(state["encoder"])
        self.loss.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.step, self.history = state["epoch"], state["step"], state["history"]
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np.random.set_state(state["rng"]["numpy"])
        log.info("resumed from %s at epoch %d (step %d)", self.checkpoint_path, self.epoch, self.step)

    def _checkpoint(self) -> None:
        if self.rank != 0:
            return
        _save_atomic({"encoder": self.encoder.state_dict(), "loss": self.loss.state_dict(),
                      "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                      "epoch": self.epoch, "step": self.step, "history": self.history,
                      "encoder_config": self.encoder_config.__dict__, "train_config": self.cfg,
                      "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                              "numpy": np.random.get_state()}}, self.checkpoint_path)

    # --- the loop ---------------------------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=self.cfg["batch_size"], num_workers=self.cfg["workers"],
                          drop_last=True, persistent_workers=False)

    def train(self, stop_after_epochs: int | None = None) -> dict:
        cfg = self.cfg
        use_amp = self.device.type == "cuda" and cfg["amp"]
        epochs_run = 0
        while self.epoch < cfg["epochs"]:
            if stop_after_epochs is not None and epochs_run >= stop_after_epochs:
                break
            # Per-epoch streams: a resumed run draws exactly what an uninterrupted one would.
            generator = random.Random(cfg["seed"] * 100003 + self.epoch)
            augment_generator = torch.Generator().manual_seed(cfg["seed"] * 100003 + self.epoch)
            self.dataset.set_epoch(self.epoch)
            self.model.train()
            started, sums, micro = time.perf_counter(), {}, 0
            samples = 0
            for batch in self._loader():
                xyz, rgb = batch["xyz"].to(self.device), batch["rgb"].to(self.device)
                if cfg["augment"]:
                    xyz, rgb = augment(xyz, rgb, self.up_axis, augment_generator,
                                       keep_prefix=self.encoder_config.groups)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                    features = self.model(xyz, rgb)
                out = self.loss(features, self.image_targets(batch), self.text_targets(batch, generator))
                (out["loss"] / cfg["accumulate"]).backward()
                micro += 1
                samples += len(batch["uid"])
                for key, value in out.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                if micro % cfg["accumulate"] == 0:
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    self.scheduler.step()
                    self.step += 1
            self.epoch += 1
            epochs_run += 1
            seconds = time.perf_counter() - started
            record = {"epoch": self.epoch, "step": self.step, "lr": self.scheduler.get_last_lr()[0],
                      "samples_per_s": round(samples * self.world / max(seconds, 1e-9), 1),
                      **{k: round(v / max(micro, 1), 4) for k, v in sums.items()}}
            self.history.append(record)
            log.info("epoch %s", json.dumps(record))
            self._checkpoint()
            self._write_curve()
        return self.finish()

    def finish(self) -> dict:
        unchanged = tower_fingerprint(self.clip) == self.tower_hash
        if not unchanged:
            raise RuntimeError("the frozen CLIP towers changed during training")
        summary = {"epochs": self.epoch, "steps": self.step, "towers_unchanged": unchanged,
                   "trainable_parameters": sum(p.numel() for g in self.optimizer.param_groups for p in g["params"]),
                   "encoder": self.encoder_config.__dict__, "history": self.history}
        if self.rank == 0:
            with atomic_path(self.out_dir / "metrics.json") as tmp:
                tmp.write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def save_model(self, path) -> None:
        if self.rank == 0:
            _save_atomic({"encoder": self.encoder.state_dict(), "encoder_config": self.encoder_config.__dict__,
                          "train_config": self.cfg, "categories": self.categories}, Path(path))

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
    points = " ".join(f"{pad + i * step:.1f},{height - pad - (v - bottom) / span * (height - 2 * pad):.1f}"
                      for i, v in enumerate(losses))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
            f'<rect width="100%" height="100%" fill="white"/>'
            f'<polyline fill="none" stroke="steelblue" stroke-width="2" points="{points}"/>'
            f'<text x="{pad}" y="18" font-size="12">training loss per epoch: {top:.3f} to {losses[-1]:.3f}</text>'
            f'<text x="{pad}" y="{height - 8}" font-size="11">epoch 1 .. {len(losses)}</text></svg>\n')
