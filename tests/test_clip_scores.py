"""CLIP ranking without building a model: scores, top-k, the activation read from the registry, the input cast."""

import logging

import numpy as np
import pytest
import torch
from stand_ins import stand_ins  # noqa: F401 - fixture
from torch import nn

from ulip2_pipeline.config import default_config
from ulip2_pipeline.models import clip as clip_module
from ulip2_pipeline.models.clip import (
    Clip,
    _cast_input_to,
    load_clip,
    model_activation,
    needs_quick_gelu,
    score_views,
    top_k,
)
from ulip2_pipeline.settings import RankSettings

CPU = torch.device("cpu")


class LookupClip(nn.Module):
    """Images and captions whose features are given: an image is its feature vector, a caption's token is its row."""

    def __init__(self, caption_features: dict[str, list[float]], dtype=torch.float32):
        super().__init__()
        self.names = list(caption_features)
        self.table = torch.tensor([caption_features[n] for n in self.names], dtype=dtype)
        self.dtype = dtype

    def encode_image(self, pixels):
        return pixels.to(self.dtype)

    def encode_text(self, tokens):
        return self.table[tokens]

    def tokenize(self, captions):
        return torch.tensor([self.names.index(c) for c in captions])


def lookup_clip(caption_features, dtype=torch.float32) -> Clip:
    model = LookupClip(caption_features, dtype)
    return Clip(model, lambda image: torch.tensor(image, dtype=torch.float32), model.tokenize, CPU)


def cosine(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


CAPTIONS = {"red": [3.0, 0.0, 0.0], "green": [0.0, 0.5, 0.0], "pink": [2.0, 0.0, 2.0], "teal": [0.0, 1.0, 1.0]}
IMAGES = [[1.0, 0.0, 0.0], [0.0, 4.0, 3.0]]
PER_VIEW = [["red", "green", "pink"], ["teal", "red", "green"]]


def test_each_view_is_scored_against_its_own_captions_by_cosine_similarity():
    scores = score_views(lookup_clip(CAPTIONS), IMAGES, PER_VIEW)
    expected = [[cosine(image, CAPTIONS[c]) for c in captions] for image, captions in zip(IMAGES, PER_VIEW)]
    assert scores.shape == (2, 3)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_half_precision_features_give_float32_scores():
    scores = score_views(lookup_clip(CAPTIONS, torch.float16), IMAGES, PER_VIEW)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores[0], [1.0, 0.0, cosine(IMAGES[0], CAPTIONS["pink"])], atol=1e-3)


def test_top_k_keeps_caption_order_among_many_equal_scores():
    """Ties are rare with real scores, but when they happen the earlier caption wins, for any number of captions
    (numpy's default sort only keeps that order for short arrays)."""
    pattern = [0.2, 0.9, 0.2, 0.2, 0.5, 0.9]
    scores = np.array(pattern * 4, dtype=np.float32)
    captions = [f"caption {i}" for i in range(len(scores))]
    best_first = top_k(scores, captions, len(scores))
    assert best_first == sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    assert top_k(scores, captions, 3) == [1, 5, 7]


def test_top_k_never_fills_up_with_empty_captions():
    scores = np.array([0.9, 0.1, 0.8, 0.3], dtype=np.float32)
    assert top_k(scores, ["", "a", "", "b"], 3) == [3, 1]
    assert top_k(scores, ["", "a", "", "b"], 1) == [3]


def test_top_k_of_k_zero_is_empty():
    assert top_k(np.array([0.5, 0.4], dtype=np.float32), ["a", "b"], 0) == []


@pytest.mark.parametrize("arch", ["ViT-L-14", "ViT-L/14"])
def test_openai_vit_l_14_weights_need_quick_gelu_on_the_gelu_config(arch):
    assert needs_quick_gelu(arch, "openai") is True


def test_the_quick_gelu_fix_is_logged_with_what_is_loaded_instead(caplog):
    with caplog.at_level(logging.WARNING, logger="ulip2_pipeline.models.clip"):
        needs_quick_gelu("ViT-L-14", "openai")
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith("ViT-L-14/openai: ")
    assert "trained with QuickGELU but the ViT-L-14 config uses GELU" in message
    assert message.endswith("loading with QuickGELU (as ViT-L-14-quickgelu)")


@pytest.mark.parametrize(
    "arch, pretrained",
    [
        ("ViT-L-14-quickgelu", "openai"),  # the architecture already matches the weights
        ("ViT-B-32", "laion2b_s34b_b79k"),  # trained with GELU, built with GELU
        ("ViT-L-14", "no-such-tag"),  # not in the registry: nothing to go by
        ("ViT-L-14", None),  # random weights
        ("ViT-L-14", ""),
    ],
)
def test_nothing_to_fix_needs_no_quick_gelu(arch, pretrained, caplog):
    with caplog.at_level(logging.WARNING):
        assert needs_quick_gelu(arch, pretrained) is False
    assert caplog.records == []


def test_a_local_checkpoint_is_built_as_its_architecture_config_says(tmp_path):
    checkpoint = tmp_path / "openai"
    checkpoint.write_bytes(b"weights")
    assert needs_quick_gelu("ViT-L-14", str(checkpoint)) is False


def test_a_registered_tag_on_an_architecture_without_a_config_is_read_as_gelu(monkeypatch):
    from open_clip import pretrained as registry

    monkeypatch.setitem(
        registry._PRETRAINED, "ulip2-test-unconfigured", {"quick": registry._pcfg(file="w.pt", quick_gelu=True)}
    )
    assert needs_quick_gelu("ulip2-test-unconfigured", "quick") is True


@pytest.mark.parametrize("activation, expected", [(nn.GELU, "gelu"), ("quick", "quick_gelu")])
def test_the_activation_is_read_from_the_built_model(activation, expected):
    from open_clip.transformer import QuickGELU

    layer = QuickGELU() if activation == "quick" else activation()
    assert model_activation(nn.Sequential(nn.Linear(2, 2), nn.Sequential(layer))) == expected


class TwoInputs(nn.Module):
    def forward(self, pixels, scale):
        return pixels * scale


def test_the_input_cast_changes_only_the_pixels():
    tower = TwoInputs()
    tower.register_forward_pre_hook(_cast_input_to(torch.float16))
    out = tower(torch.ones(2, dtype=torch.float32), 3)
    assert out.dtype == torch.float16
    assert out.tolist() == [3.0, 3.0]


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_the_model_is_built_on_the_requested_device(stand_ins):
    """The meta device stands in for a GPU: a model left on the CPU would not meet its inputs there."""
    spec = stand_ins["embed"]
    clip = load_clip(spec["arch"], spec["pretrained"], spec["arch_config"], torch.device("meta"))
    assert {p.device.type for p in clip.model.parameters()} == {"meta"}
    assert clip.device == torch.device("meta")


def test_the_configured_clip_is_the_one_its_settings_name_on_the_device_they_pick(monkeypatch):
    picked, loaded = [], []
    monkeypatch.setattr(clip_module, "pick_device", lambda choice: picked.append(choice) or torch.device("meta"))
    monkeypatch.setattr(clip_module, "load_clip", lambda *args: loaded.append(args) or "clip")
    section = {**default_config()["rank"], "device": "cuda", "precision": "fp16", "arch_config": "arch.json"}
    settings = RankSettings.from_config(section)
    assert clip_module.load_configured_clip(settings) == "clip"
    assert picked == ["cuda"]
    assert loaded == [(settings.arch, settings.pretrained, "arch.json", torch.device("meta"), "fp16")]
    assert clip_module.load_configured_clip(settings, torch.device("cpu")) == "clip"
    assert picked == ["cuda"]  # an explicit device is not picked again
    assert loaded[-1][3] == torch.device("cpu")
