"""ULIP's contrastive loss checked against a by-hand computation on tiny tensors, in one process.

Two-rank gathering is checked here with a stand-in for ``torch.distributed`` that plays rank 1 of 2;
test_rank_parity.py runs the real two-process case.
"""

import math
from fractions import Fraction

import pytest
import torch

from ulip2_pipeline.train import loss as loss_module
from ulip2_pipeline.train.loss import LOGIT_SCALE_INIT, LOGIT_SCALE_MAX, UlipLoss, gather_with_grad

# Rows are matched pairs. Unnormalised on purpose: the loss compares directions only.
POINTS = [[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]]
# Point 0 is nearest text 1, point 1 nearest text 2, point 2 nearest text 0: no point picks its own text,
# while text 0 does pick its own point (0): the two directions' accuracies differ.
TEXT = [[1.0, 0.1], [5.0, 0.0], [0.0, 0.5]]
# Points 1 and 2 pick their own image, point 0 picks image 2; only image 1 picks its own point.
IMAGE = [[-2.0, 0.0], [-1.0, 1.0], [3.0, 0.0]]


def unit(rows):
    return [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in rows]


def logits(a, b, scale):
    return [[scale * sum(x * y for x, y in zip(u, v)) for v in unit(b)] for u in unit(a)]


def cross_entropy(rows):
    """Mean over rows of -log softmax(row)[row's own index]."""
    return sum(math.log(sum(math.exp(v) for v in row)) - row[i] for i, row in enumerate(rows)) / len(rows)


def transpose(rows):
    return [list(column) for column in zip(*rows)]


def by_hand(points, other, scale):
    forward = logits(points, other, scale)
    return (cross_entropy(forward) + cross_entropy(transpose(forward))) / 2


def tensors(*rows_list, dtype=torch.float32):
    return [torch.tensor(rows, dtype=dtype) for rows in rows_list]


def run(loss=None, **kwargs):
    loss = loss or UlipLoss()
    return loss(*tensors(POINTS, IMAGE, TEXT, **kwargs))


def test_the_initial_logit_scale_is_one_over_0_07():
    assert UlipLoss().logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert LOGIT_SCALE_INIT == pytest.approx(math.log(1 / 0.07))
    assert run()["logit_scale"].item() == pytest.approx(1 / 0.07, rel=1e-6)


def test_the_text_and_image_terms_are_each_the_mean_of_both_directions():
    out = run()
    scale = 1 / 0.07
    assert out["loss_text"].item() == pytest.approx(by_hand(POINTS, TEXT, scale), rel=1e-5)
    assert out["loss_image"].item() == pytest.approx(by_hand(POINTS, IMAGE, scale), rel=1e-5)


def test_the_loss_is_the_sum_of_the_text_and_image_terms():
    out = run()
    scale = 1 / 0.07
    assert out["loss"].item() == pytest.approx(by_hand(POINTS, TEXT, scale) + by_hand(POINTS, IMAGE, scale), rel=1e-5)


def test_the_directions_are_points_to_others_and_back():
    """Swapping which side is the points changes nothing only if both directions are averaged: pin each one."""
    scale = 1 / 0.07
    forward = cross_entropy(logits(POINTS, TEXT, scale))
    backward = cross_entropy(transpose(logits(POINTS, TEXT, scale)))
    assert forward != pytest.approx(backward, rel=1e-3)  # the data tell the two directions apart
    assert run()["loss_text"].item() == pytest.approx((forward + backward) / 2, rel=1e-5)


def test_accuracy_is_the_share_of_points_whose_best_match_is_their_own_pair():
    """Read along the points' rows: text to points would be 1 in 3 (text 0), images to points 1 in 3 (image 1)."""
    out = run()
    assert Fraction(out["acc_text"].item()).limit_denominator(3) == 0
    assert Fraction(out["acc_image"].item()).limit_denominator(3) == Fraction(2, 3)


@pytest.mark.parametrize("stored, used", [(-1.0, 0.0), (0.5, 0.5), (10.0, math.log(100.0))])
def test_the_logit_scale_is_clamped_to_between_0_and_log_100(stored, used):
    loss = UlipLoss()
    with torch.no_grad():
        loss.logit_scale.fill_(stored)
    out = run(loss)
    assert loss.logit_scale.item() == pytest.approx(used, abs=1e-6)
    assert out["logit_scale"].item() == pytest.approx(math.exp(used), rel=1e-6)
    assert out["loss_text"].item() == pytest.approx(by_hand(POINTS, TEXT, math.exp(used)), rel=1e-5)


def test_the_largest_logit_scale_is_100():
    assert math.exp(LOGIT_SCALE_MAX) == pytest.approx(100.0)


def test_half_precision_features_give_a_float32_loss_like_float32_features():
    out = run(dtype=torch.bfloat16)
    assert out["loss"].dtype == torch.float32
    # bfloat16 rounds the inputs (about 3 significant digits), nothing after that
    assert out["loss"].item() == pytest.approx(run()["loss"].item(), rel=2e-2)


def test_the_loss_trains_the_points_and_the_scale_and_the_reported_terms_are_detached():
    loss = UlipLoss()
    points, image, text = tensors(POINTS, IMAGE, TEXT)
    points.requires_grad_(True)
    out = loss(points, image, text)
    out["loss"].backward()
    assert points.grad is not None
    assert points.grad.abs().sum() > 0
    assert loss.logit_scale.grad is not None
    assert loss.logit_scale.grad.item() != 0
    for name in ("loss_text", "loss_image", "acc_text", "acc_image", "logit_scale"):
        assert not out[name].requires_grad, name


def test_the_loss_is_computed_on_the_features_device():
    """The meta device stands in for a GPU: labels made on the CPU would not meet the logits there."""
    loss = UlipLoss().to("meta")
    features = torch.empty(3, 4, device="meta")
    out = loss(features, features, features)
    assert {name: value.device.type for name, value in out.items()} == dict.fromkeys(out, "meta")


class RankOneOfTwo:
    """What ``torch.distributed`` shows rank 1 of a two-rank group; rank 0 sends ``rank_zero_rows`` in call order."""

    def __init__(self, *rank_zero_rows: torch.Tensor):
        self.rank_zero_rows = iter(rank_zero_rows)
        self.sent = []

    def is_available(self):
        return True

    def is_initialized(self):
        return True

    def get_world_size(self):
        return 2

    def get_rank(self):
        return 1

    def all_gather(self, parts, tensor):
        assert len(parts) == 2
        assert all(p.shape == tensor.shape for p in parts)
        self.sent.append(tensor)
        parts[0].copy_(next(self.rank_zero_rows))
        parts[1].copy_(tensor)


def test_without_a_process_group_gathering_returns_the_rows_themselves():
    x = torch.randn(3, 4)
    assert torch.equal(gather_with_grad(x), x)


def test_gathering_puts_every_ranks_rows_in_rank_order(monkeypatch):
    monkeypatch.setattr(loss_module, "dist", RankOneOfTwo(torch.tensor([[1.0, 2.0], [3.0, 4.0]])))
    mine = torch.tensor([[5.0, 6.0], [7.0, 8.0]])
    assert gather_with_grad(mine).tolist() == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]


def test_only_this_ranks_gathered_rows_carry_its_gradient(monkeypatch):
    fake = RankOneOfTwo(torch.zeros(2, 2))
    monkeypatch.setattr(loss_module, "dist", fake)
    mine = torch.tensor([[5.0, 6.0], [7.0, 8.0]], requires_grad=True)
    weights = torch.arange(8.0).reshape(4, 2)
    (gather_with_grad(mine) * weights).sum().backward()
    assert mine.grad.tolist() == weights[2:].tolist()
    assert not fake.sent[0].requires_grad  # what goes to the other ranks is plain data


def test_the_loss_over_two_ranks_is_the_loss_of_the_global_batch(monkeypatch):
    """Rank 0 holds pair 0, this rank (1) pair 2: the loss is the two-pair loss, labels over both ranks."""
    points, image, text = [POINTS[0], POINTS[2]], [IMAGE[0], IMAGE[2]], [TEXT[0], TEXT[2]]
    sent_by_rank_zero = tensors(unit(points[:1]), unit(image[:1]), unit(text[:1]))
    monkeypatch.setattr(loss_module, "dist", RankOneOfTwo(*sent_by_rank_zero))
    out = UlipLoss()(*tensors(points[1:], image[1:], text[1:]))
    scale = 1 / 0.07
    assert out["loss_text"].item() == pytest.approx(by_hand(points, text, scale), rel=1e-5)
    assert out["loss_image"].item() == pytest.approx(by_hand(points, image, scale), rel=1e-5)
