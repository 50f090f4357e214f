"""The published encoders, checked against forwards written here from ULIP's and OpenShape's descriptions.

The reference forwards below share no code with ``ulip2_pipeline.encoders``: they read a state dict in
the publisher's key layout (random weights at the real sizes) and compute in float64 with NumPy
neighbourhoods, the way ULIP's ``PointTransformer_Colored`` / pointnet2_ops and OpenShape's
``ppat.py`` / ``pointnet_util.py`` describe it.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from ulip2_pipeline.config import default_config
from ulip2_pipeline.encoders import checkpoints, cli
from ulip2_pipeline.encoders.checkpoints import CheckpointError, load_encoder
from ulip2_pipeline.encoders.grouping import ball_query, farthest_point_sample
from ulip2_pipeline.encoders.registry import build, config_dict, named_config
from ulip2_pipeline.models.tiny_models import build_tiny_clip
from ulip2_pipeline.train import eval_cli

ULIP_DEPTH, ULIP_WIDTH, ULIP_GROUPS, ULIP_K = 18, 384, 512, 32
OS_DIM, OS_DEPTH, OS_HEADS, OS_MLP, OS_SA, OS_PATCHES, OS_RADIUS, OS_NSAMPLE = 512, 12, 8, 1536, 256, 384, 0.2, 64


def _weights(rng, shape, fan_in=None):
    fan_in = fan_in or (shape[1] if len(shape) > 1 else shape[0])
    return torch.from_numpy(rng.normal(0, 1 / math.sqrt(fan_in), size=shape))


def _norm_params(rng, prefix, width, batch_norm=False):
    out = {
        f"{prefix}.weight": torch.from_numpy(1 + 0.1 * rng.normal(size=width)),
        f"{prefix}.bias": torch.from_numpy(0.1 * rng.normal(size=width)),
    }
    if batch_norm:
        out[f"{prefix}.running_mean"] = torch.from_numpy(0.1 * rng.normal(size=width))
        out[f"{prefix}.running_var"] = torch.from_numpy(rng.uniform(0.5, 1.5, size=width))
        out[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)
    return out


def ulip_state(seed=0, in_channels=6, depth=ULIP_DEPTH, width=ULIP_WIDTH) -> dict:
    """Random weights under ULIP-2's key names and shapes (ULIP2_WITH_OPENCLIP, without 'module.')."""
    rng = np.random.default_rng(seed)
    p = "point_encoder."
    sd = {
        f"{p}encoder.first_conv.0.weight": _weights(rng, (128, in_channels, 1), in_channels),
        f"{p}encoder.first_conv.0.bias": _weights(rng, (128,), 10),
        **_norm_params(rng, f"{p}encoder.first_conv.1", 128, batch_norm=True),
        f"{p}encoder.first_conv.3.weight": _weights(rng, (256, 128, 1), 128),
        f"{p}encoder.first_conv.3.bias": _weights(rng, (256,), 10),
        f"{p}encoder.second_conv.0.weight": _weights(rng, (512, 512, 1), 512),
        f"{p}encoder.second_conv.0.bias": _weights(rng, (512,), 10),
        **_norm_params(rng, f"{p}encoder.second_conv.1", 512, batch_norm=True),
        f"{p}encoder.second_conv.3.weight": _weights(rng, (256, 512, 1), 512),
        f"{p}encoder.second_conv.3.bias": _weights(rng, (256,), 10),
        f"{p}reduce_dim.weight": _weights(rng, (width, 256)),
        f"{p}reduce_dim.bias": _weights(rng, (width,), 10),
        f"{p}cls_token": _weights(rng, (1, 1, width), 1),
        f"{p}cls_pos": _weights(rng, (1, 1, width), 1),
        f"{p}pos_embed.0.weight": _weights(rng, (128, 3)),
        f"{p}pos_embed.0.bias": _weights(rng, (128,), 10),
        f"{p}pos_embed.2.weight": _weights(rng, (width, 128)),
        f"{p}pos_embed.2.bias": _weights(rng, (width,), 10),
        **_norm_params(rng, f"{p}norm", width),
        "pc_projection": _weights(rng, (2 * width, 1280)),
    }
    for i in range(depth):
        b = f"{p}blocks.blocks.{i}."
        sd |= _norm_params(rng, f"{b}norm1", width) | _norm_params(rng, f"{b}norm2", width)
        sd |= {
            f"{b}attn.qkv.weight": _weights(rng, (3 * width, width)),
            f"{b}attn.proj.weight": _weights(rng, (width, width)),
            f"{b}attn.proj.bias": _weights(rng, (width,), 10),
            f"{b}mlp.fc1.weight": _weights(rng, (4 * width, width)),
            f"{b}mlp.fc1.bias": _weights(rng, (4 * width,), 10),
            f"{b}mlp.fc2.weight": _weights(rng, (width, 4 * width)),
            f"{b}mlp.fc2.bias": _weights(rng, (width,), 10),
        }
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def ulip_checkpoint(state: dict, model="ULIP2_PointBERT_Colored") -> dict:
    """How ULIP's main.py saves: DDP's 'module.' prefix, the frozen OpenCLIP and the logit scale included."""
    wrapped = {f"module.{k}": v for k, v in state.items()}
    wrapped["module.open_clip_model.visual.proj"] = torch.zeros(8, 4)
    wrapped["module.open_clip_model.token_embedding.weight"] = torch.zeros(10, 4)
    wrapped["module.logit_scale"] = torch.tensor(4.6)
    return {"epoch": 7, "state_dict": wrapped, "best_acc1": 50.6, "args": argparse.Namespace(model=model, lr=3e-3)}


# --- the reference forwards ---------------------------------------------------------------------------------
def reference_fps(xyz: np.ndarray, count: int, skip_near_origin: bool) -> np.ndarray:
    """pointnet2_ops' kernel: start at 0, temp 1e10, skip |p|^2 <= 1e-3, strict '>' keeps the lowest index."""
    temp = np.full(len(xyz), 1e10)
    chosen, old = [0], 0
    usable = (xyz**2).sum(1) > 1e-3 if skip_near_origin else np.ones(len(xyz), bool)
    for _ in range(count - 1):
        d = ((xyz - xyz[old]) ** 2).sum(1)
        temp = np.where(usable, np.minimum(d, temp), temp)
        scores = np.where(usable, temp, -1.0)
        old = int(np.argmax(scores)) if scores.max() > -1.0 else 0  # np.argmax: the first of equal maxima
        chosen.append(old)
    return np.array(chosen)


def _t(sd, key):
    return sd[key].double()


def _bn(x, sd, prefix):  # channels last
    return (x - _t(sd, f"{prefix}.running_mean")) / torch.sqrt(_t(sd, f"{prefix}.running_var") + 1e-5) * _t(
        sd, f"{prefix}.weight"
    ) + _t(sd, f"{prefix}.bias")


def _ln(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], _t(sd, f"{prefix}.weight"), _t(sd, f"{prefix}.bias"), 1e-5)


def _attention(h, qkv_weight, heads):
    tokens, width = h.shape
    q, k, v = (h @ qkv_weight.T).reshape(tokens, 3, heads, width // heads).permute(1, 2, 0, 3)
    attention = torch.softmax(q @ k.transpose(-1, -2) * (width // heads) ** -0.5, dim=-1)
    return (attention @ v).transpose(0, 1).reshape(tokens, width)


def ulip_reference(sd: dict, cloud: np.ndarray, heads=6) -> np.ndarray:
    xyz, rgb = cloud[:, :3].astype(np.float64), cloud[:, 3:].astype(np.float64)
    centres = xyz[reference_fps(xyz, ULIP_GROUPS, skip_near_origin=True)]
    nearest = np.argsort(((centres[:, None] - xyz[None]) ** 2).sum(-1), axis=1, kind="stable")[:, :ULIP_K]
    patch = torch.from_numpy(np.concatenate([xyz[nearest] - centres[:, None], rgb[nearest]], -1))
    e = "point_encoder.encoder."

    def conv(x, key):
        return x @ _t(sd, f"{key}.weight")[..., 0].T + _t(sd, f"{key}.bias")

    x = conv(torch.relu(_bn(conv(patch, f"{e}first_conv.0"), sd, f"{e}first_conv.1")), f"{e}first_conv.3")
    x = torch.cat([x.max(1, keepdim=True).values.expand_as(x), x], -1)
    x = conv(torch.relu(_bn(conv(x, f"{e}second_conv.0"), sd, f"{e}second_conv.1")), f"{e}second_conv.3").max(1).values
    p = "point_encoder."
    tokens = x @ _t(sd, f"{p}reduce_dim.weight").T + _t(sd, f"{p}reduce_dim.bias")
    c = torch.from_numpy(centres)
    pos = F.gelu(c @ _t(sd, f"{p}pos_embed.0.weight").T + _t(sd, f"{p}pos_embed.0.bias"))
    pos = pos @ _t(sd, f"{p}pos_embed.2.weight").T + _t(sd, f"{p}pos_embed.2.bias")
    x = torch.cat([_t(sd, f"{p}cls_token")[0], tokens])
    pos = torch.cat([_t(sd, f"{p}cls_pos")[0], pos])
    for i in range(ULIP_DEPTH):
        b = f"{p}blocks.blocks.{i}."
        x = x + pos  # ULIP adds the positions before every block
        a = _attention(_ln(x, sd, f"{b}norm1"), _t(sd, f"{b}attn.qkv.weight"), heads)
        x = x + a @ _t(sd, f"{b}attn.proj.weight").T + _t(sd, f"{b}attn.proj.bias")
        h = F.gelu(_ln(x, sd, f"{b}norm2") @ _t(sd, f"{b}mlp.fc1.weight").T + _t(sd, f"{b}mlp.fc1.bias"))
        x = x + h @ _t(sd, f"{b}mlp.fc2.weight").T + _t(sd, f"{b}mlp.fc2.bias")
    x = _ln(x, sd, f"{p}norm")
    return (torch.cat([x[0], x[1:].max(0).values]) @ _t(sd, "pc_projection")).numpy()


def openshape_state(seed=0) -> dict:
    """Random weights under OpenShape's key names (Projected(PointPatchTransformer) at scaling 4)."""
    rng = np.random.default_rng(seed)
    sd, last = {}, 9
    for i, width in enumerate([64, 64, OS_SA]):
        sd[f"ppat.sa.mlp_convs.{i}.weight"] = _weights(rng, (width, last, 1, 1), last)
        sd[f"ppat.sa.mlp_convs.{i}.bias"] = _weights(rng, (width,), 10)
        sd |= _norm_params(rng, f"ppat.sa.mlp_bns.{i}", width, batch_norm=True)
        last = width
    sd["ppat.lift.0.weight"] = _weights(rng, (OS_DIM, OS_SA + 3, 1), OS_SA + 3)
    sd["ppat.lift.0.bias"] = _weights(rng, (OS_DIM,), 10)
    sd |= _norm_params(rng, "ppat.lift.2", OS_DIM)
    sd["ppat.cls_token"] = torch.from_numpy(rng.normal(size=OS_DIM))
    for i in range(OS_DEPTH):
        b = f"ppat.transformer.layers.{i}."
        sd |= _norm_params(rng, f"{b}0.norm", OS_DIM) | _norm_params(rng, f"{b}1.norm", OS_DIM)
        sd[f"{b}0.fn.to_qkv.weight"] = _weights(rng, (3 * OS_DIM, OS_DIM))
        sd[f"{b}0.fn.to_out.0.weight"] = _weights(rng, (OS_DIM, OS_DIM))
        sd[f"{b}0.fn.to_out.0.bias"] = _weights(rng, (OS_DIM,), 10)
        sd[f"{b}1.fn.net.0.weight"] = _weights(rng, (OS_MLP, OS_DIM))
        sd[f"{b}1.fn.net.0.bias"] = _weights(rng, (OS_MLP,), 10)
        sd[f"{b}1.fn.net.3.weight"] = _weights(rng, (OS_DIM, OS_MLP))
        sd[f"{b}1.fn.net.3.bias"] = _weights(rng, (OS_DIM,), 10)
    sd["proj.weight"] = _weights(rng, (1280, OS_DIM))
    sd["proj.bias"] = _weights(rng, (1280,), 10)
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def openshape_checkpoint(state: dict) -> dict:
    """How OpenShape's train.py saves (DDP-wrapped model, the loss's scale, the optimiser)."""
    return {
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "logit_scale": {"module.logit_scale": torch.tensor(4.6)},
        "text_proj": {},
        "image_proj": {},
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]},
        "scheduler": {},
        "epoch": 3,
    }


def openshape_reference(sd: dict, cloud: np.ndarray) -> np.ndarray:
    xyz = cloud[:, :3].astype(np.float64)[:, [0, 2, 1]]  # OpenShape's data is z-up: swap y and z
    features = np.concatenate([xyz, cloud[:, 3:].astype(np.float64)], -1)
    centres = xyz[reference_fps(xyz, OS_PATCHES, skip_near_origin=False)]
    d2 = ((centres[:, None] - xyz[None]) ** 2).sum(-1)
    groups = []
    for row in d2:
        inside = np.flatnonzero(row <= OS_RADIUS**2)[:OS_NSAMPLE]
        groups.append(np.concatenate([inside, np.full(OS_NSAMPLE - len(inside), inside[0])]))
    groups = np.stack(groups)
    x = torch.from_numpy(np.concatenate([xyz[groups] - centres[:, None], features[groups]], -1))
    for i in range(3):
        w = _t(sd, f"ppat.sa.mlp_convs.{i}.weight")[:, :, 0, 0]
        x = torch.relu(_bn(x @ w.T + _t(sd, f"ppat.sa.mlp_convs.{i}.bias"), sd, f"ppat.sa.mlp_bns.{i}"))
    x = torch.cat([torch.from_numpy(centres), x.max(1).values], -1)
    x = _ln(x @ _t(sd, "ppat.lift.0.weight")[..., 0].T + _t(sd, "ppat.lift.0.bias"), sd, "ppat.lift.2")
    x = torch.cat([_t(sd, "ppat.cls_token")[None], x])
    for i in range(OS_DEPTH):
        b = f"ppat.transformer.layers.{i}."
        a = _attention(_ln(x, sd, f"{b}0.norm"), _t(sd, f"{b}0.fn.to_qkv.weight"), OS_HEADS)
        x = x + a @ _t(sd, f"{b}0.fn.to_out.0.weight").T + _t(sd, f"{b}0.fn.to_out.0.bias")
        h = F.gelu(_ln(x, sd, f"{b}1.norm") @ _t(sd, f"{b}1.fn.net.0.weight").T + _t(sd, f"{b}1.fn.net.0.bias"))
        x = x + h @ _t(sd, f"{b}1.fn.net.3.weight").T + _t(sd, f"{b}1.fn.net.3.bias")
    return (x[0] @ _t(sd, "proj.weight").T + _t(sd, "proj.bias")).numpy()


def clouds(batch=2, points=4096, seed=1) -> np.ndarray:
    """Hollow shells (so points near the centre are farthest from the rest) with a few points within
    0.03 of the origin, which ULIP's sampler must never pick, normalised to the unit sphere; colours in [0, 1]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(batch):
        xyz = rng.normal(size=(points, 3)) * [1.0, 0.6, 0.8]
        xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
        xyz -= xyz.mean(0)
        xyz /= np.linalg.norm(xyz, axis=1).max()
        xyz[1:6] = rng.normal(scale=0.01, size=(5, 3))
        out.append(np.concatenate([xyz, rng.uniform(size=(points, 3))], -1))
    return np.stack(out).astype(np.float32)


def cosine(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def assert_matches(features: np.ndarray, references: list[np.ndarray]) -> None:
    """Each cloud's features point where the reference's do (cosine >= 0.999), and so does what tells two
    clouds apart: with random weights most of a feature is the same for every cloud, so the raw cosine
    alone would pass an encoder that reads its input wrongly."""
    for ours, reference in zip(features, references):
        assert cosine(ours, reference) >= 0.999
    assert cosine(features[0] - features[1], references[0] - references[1]) >= 0.999


# --- tests --------------------------------------------------------------------------------------------------
def test_farthest_point_sample_follows_pointnet2_ops_rules():
    cloud = clouds(batch=1, points=600)[0, :, :3]
    for skip in (True, False):
        ours = farthest_point_sample(torch.from_numpy(cloud)[None], 64, skip_near_origin=skip)[0].numpy()
        assert ours.tolist() == reference_fps(cloud.astype(np.float64), 64, skip).tolist()
    near_origin = set(range(1, 6))
    assert near_origin & set(reference_fps(cloud.astype(np.float64), 64, False).tolist())  # they would be picked
    assert not near_origin & set(farthest_point_sample(torch.from_numpy(cloud)[None], 64, True)[0].tolist())


def test_ball_query_takes_the_lowest_indices_within_the_radius_padded_with_the_first():
    xyz = torch.tensor([[[0.0, 0, 0], [5, 0, 0], [0.1, 0, 0], [0, 0.19, 0], [0.3, 0, 0], [0, 0, 0.05]]])
    index = ball_query(xyz[:, :1], xyz, radius=0.2, count=5)[0, 0].tolist()
    assert index == [0, 2, 3, 5, 0]
    on_the_sphere = torch.tensor([[[0.0, 0, 0], [0.5, 0, 0], [2, 0, 0]]])  # distance exactly the radius: inside
    assert ball_query(on_the_sphere[:, :1], on_the_sphere, radius=0.5, count=3)[0, 0].tolist() == [0, 1, 0]


def test_ball_query_needs_as_many_points_as_a_group():
    xyz = torch.zeros(1, 4, 3)
    assert ball_query(xyz[:, :1], xyz, radius=0.2, count=4).shape == (1, 1, 4)
    with pytest.raises(ValueError, match="a cloud of 4 points is smaller than a group of 5"):
        ball_query(xyz[:, :1], xyz, radius=0.2, count=5)


def test_ulip2_checkpoint_encodes_as_ulips_own_forward(tmp_path):
    state = ulip_state()
    torch.save(ulip_checkpoint(state), tmp_path / "ulip2.pt")
    batch = clouds()
    np.save(tmp_path / "clouds.npy", batch)
    cli.main(
        [
            "--checkpoint",
            str(tmp_path / "ulip2.pt"),
            "--format",
            "ulip2",
            "--points",
            str(tmp_path / "clouds.npy"),
            "--out",
            str(tmp_path / "emb.npy"),
        ]
    )
    features = np.load(tmp_path / "emb.npy")
    assert features.dtype == np.float32
    assert features.shape == (2, 1280)
    assert_matches(features, [ulip_reference(state, cloud) for cloud in batch])
    encoder = load_encoder(tmp_path / "ulip2.pt", "ulip2")
    tensor = torch.from_numpy(batch)
    centres, _ = encoder.point_encoder.group(tensor[..., :3], tensor[..., 3:])
    reference = batch[0, reference_fps(batch[0, :, :3].astype(np.float64), ULIP_GROUPS, skip_near_origin=True), :3]
    assert np.array_equal(centres[0].numpy(), reference)  # ULIP's centres, the near-origin points never among them


def test_openshape_checkpoint_encodes_as_openshapes_own_forward(tmp_path):
    state = openshape_state()
    torch.save(openshape_checkpoint(state), tmp_path / "model.pt")
    batch = clouds(seed=2)
    encoder = load_encoder(tmp_path / "model.pt", "openshape")
    assert (encoder.config.patches, encoder.config.radius, encoder.config.nsample, encoder.config.heads) == (
        384,
        0.2,
        64,
        8,
    )
    features = cli.encode_clouds(encoder, batch, torch.device("cpu"))
    assert features.shape == (2, 1280)
    assert_matches(features, [openshape_reference(state, cloud) for cloud in batch])


def test_a_checkpoint_with_a_missing_unexpected_or_misshaped_key_is_refused_by_name(tmp_path):
    state = ulip_state(depth=ULIP_DEPTH)
    broken = dict(state)
    del broken["point_encoder.norm.weight"]
    broken["point_encoder.cls_head_finetune.0.weight"] = torch.zeros(2, 2)
    broken["pc_projection"] = torch.zeros(768, 512)[:, :1280]  # another CLIP width is fine; see below
    broken["point_encoder.reduce_dim.bias"] = torch.zeros(7)
    torch.save(ulip_checkpoint(broken), tmp_path / "broken.pt")
    with pytest.raises(CheckpointError) as error:
        load_encoder(tmp_path / "broken.pt", "ulip2")
    message = str(error.value)
    assert "missing (1): point_encoder.norm.weight" in message
    assert "unexpected (1): point_encoder.cls_head_finetune.0.weight" in message
    assert "point_encoder.reduce_dim.bias (7,) != (384,)" in message


def test_a_ulip_checkpoint_of_another_backbone_is_refused(tmp_path):
    torch.save(ulip_checkpoint(ulip_state(depth=1), model="ULIP_PN_NEXT"), tmp_path / "pn.pt")
    with pytest.raises(CheckpointError, match="ULIP_PN_NEXT"):
        load_encoder(tmp_path / "pn.pt", "ulip2")


def test_a_ulip1_checkpoint_loads_as_the_xyz_only_point_bert(tmp_path):
    state = ulip_state(in_channels=3, depth=12)
    state["pc_projection"] = state["pc_projection"][:, :512].contiguous()
    torch.save(ulip_checkpoint(state, model="ULIP_PointBERT"), tmp_path / "ulip1.pt")
    encoder = load_encoder(tmp_path / "ulip1.pt", "ulip2")
    assert (encoder.config.in_channels, encoder.config.depth, encoder.config.embed_dim) == (3, 12, 512)


@pytest.mark.parametrize("name", ["tiny", "openshape_tiny"])
def test_our_own_checkpoints_load_and_encode_the_same(tmp_path, name):
    torch.manual_seed(0)
    encoder = build(named_config(name, embed_dim=16)).eval()
    torch.save({"encoder": encoder.state_dict(), "encoder_config": config_dict(encoder.config)}, tmp_path / "model.pt")
    loaded = load_encoder(tmp_path / "model.pt", "ours")
    batch = torch.from_numpy(clouds(batch=2, points=512))
    with torch.inference_mode():
        assert torch.equal(loaded(batch[..., :3], batch[..., 3:]), encoder(batch[..., :3], batch[..., 3:]))


def test_a_checkpoint_from_before_the_published_layout_says_to_retrain(tmp_path):
    old = {"width": 64, "depth": 2, "heads": 2, "groups": 64, "group_size": 16, "centres": "prefix"}
    torch.save({"encoder": {}, "encoder_config": old}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="train it again"):
        load_encoder(tmp_path / "old.pt", "ours")


def test_encode_refuses_clouds_it_cannot_read(tmp_path):
    torch.save({"encoder": {}, "encoder_config": {}}, tmp_path / "m.pt")
    np.save(tmp_path / "bad.npy", np.zeros((2, 100, 3), np.float32))
    with pytest.raises(SystemExit, match=r"\(B, N, 6\)"):
        cli.main(
            [
                "--checkpoint",
                str(tmp_path / "m.pt"),
                "--format",
                "ours",
                "--points",
                str(tmp_path / "bad.npy"),
                "--out",
                str(tmp_path / "o.npy"),
            ]
        )
    colours = clouds(batch=1, points=64)
    colours[..., 3:] *= 255
    np.save(tmp_path / "rgb255.npy", colours)
    with pytest.raises(SystemExit, match="divide 0-255"):
        cli.main(
            [
                "--checkpoint",
                str(tmp_path / "m.pt"),
                "--format",
                "ours",
                "--points",
                str(tmp_path / "rgb255.npy"),
                "--out",
                str(tmp_path / "o.npy"),
            ]
        )


def test_the_ulip2_encoder_has_ulips_parameter_names_and_count():
    expected = ulip_state()
    ours = build(named_config("ulip2", embed_dim=1280)).state_dict()
    assert set(ours) == set(expected)
    assert all(tuple(ours[k].shape) == tuple(expected[k].shape) for k in expected)
    assert checkpoints.ulip_config(expected) == named_config("ulip2", 1280)


def test_ulip2_eval_scores_a_ulip_checkpoint_on_ulip2s_modelnet40_files(tmp_path, capsys):
    clip_files = build_tiny_clip(tmp_path / "tiny-clip")
    config = default_config(embed={"name": "tiny-clip", **clip_files, "device": "cpu"})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    state = ulip_state(depth=2)
    state["pc_projection"] = state["pc_projection"][:, :32].contiguous()  # the tiny CLIP's width
    torch.save(ulip_checkpoint(state), tmp_path / "ulip2.pt")
    folder = tmp_path / "modelnet40_normal_resampled"
    folder.mkdir()
    names = ["airplane", "flower_pot", "night_stand"]
    (folder / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    batch = clouds(batch=6, points=1024, seed=3)
    stored = np.empty(6, dtype=object)
    stored[:] = [{"xyz": cloud[:, :3], "rgb": cloud[:, 3:]} for cloud in batch]
    np.save(folder / "modelnet40_colored_10k_pc.npy", stored, allow_pickle=True)
    split = [{"category": names[i % 3]} for i in range(6)]
    (folder / "modelnet40_test_split_10k_colored.json").write_text(json.dumps(split))

    eval_cli.main(
        ["--checkpoint", str(tmp_path / "ulip2.pt"), "--format", "ulip2", "--benchmark", f"modelnet40_ulip2:{folder}"]
        + ["--config", str(tmp_path / "config.yaml"), "--num-points", "1024", "--device", "cpu"]
        + ["--out", str(tmp_path / "zero_shot.json")]
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "zero_shot.json").read_text())
    result = printed["benchmarks"]["modelnet40_ulip2"]
    assert (result["samples"], result["classes"], result["format"]) == (6, 3, "modelnet40_ulip2")
    assert result["confusion"]["classes"] == ["airplane", "flower pot", "night stand"]
    assert (printed["checkpoint_format"], printed["text_precision"]) == ("ulip2", "fp32")
    assert printed["text_tower"] == f"{config['embed']['arch']}/{config['embed']['pretrained']}"


def test_ulip2_eval_names_a_checkpoint_that_does_not_fit(tmp_path):
    torch.save({"state_dict": {"module.something.weight": torch.zeros(2)}}, tmp_path / "x.pt")
    with pytest.raises(SystemExit, match="not an OpenShape PointBERT checkpoint: no 'ppat.lift.0.weight'"):
        eval_cli.main(
            ["--checkpoint", str(tmp_path / "x.pt"), "--format", "openshape", "--benchmark", f"scanobjectnn:{tmp_path}"]
        )
