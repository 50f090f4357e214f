"""Nucleus sampling pinned on hand-made logits: which tokens are kept, which one a uniform picks.

The kept set is the smallest set of most likely tokens whose mass reaches top_p: the token
whose probability carries the running total over top_p is kept, the ones after it are not.
A uniform u picks the first kept token whose cumulative (renormalised) mass exceeds u.
"""

import math

import pytest
import torch
from torch.overrides import TorchFunctionMode

from ulip2_pipeline.models.blip2 import _nucleus_pick

PROBS = [0.5, 0.3, 0.15, 0.05]


def logits_of(probs, order=None) -> torch.Tensor:
    """Logits whose softmax is ``probs``, placed at token ids ``order`` (default: 0, 1, 2, ...)."""
    order = order or list(range(len(probs)))
    logits = torch.full((1, max(order) + 1), -1e9)
    for token, p in zip(order, probs):
        logits[0, token] = math.log(p) + 3.0  # a shift changes nothing
    return logits


def pick(logits, u, top_p=0.9, temperature=1.0) -> int:
    return int(_nucleus_pick(logits, torch.tensor([u]), top_p, temperature)[0])


def reference_pick(probs: list[float], u: float, top_p: float, temperature: float) -> int:
    """Sort, keep up to the token that crosses top_p, renormalise, inverse CDF (written from the definition)."""
    tempered = [p ** (1 / temperature) for p in probs]
    total = sum(tempered)
    ranked = sorted(range(len(probs)), key=lambda i: -tempered[i])
    kept, mass = [], 0.0
    for i in ranked:
        kept.append(i)
        mass += tempered[i] / total
        if mass >= top_p:
            break
    kept_mass = sum(tempered[i] for i in kept)
    running = 0.0
    for i in kept:
        running += tempered[i] / kept_mass
        if u < running:
            return i
    return kept[-1]


@pytest.mark.parametrize("u,expected", [(0.0, 0), (0.6, 0), (0.63, 1), (0.99, 1)])
def test_the_token_that_crosses_top_p_is_kept_and_the_next_is_not(u, expected):
    # top_p 0.7: 0.5 is below it, 0.5 + 0.3 crosses it: tokens 0 and 1 are kept (0.625 / 0.375 renormalised).
    assert pick(logits_of(PROBS), u, top_p=0.7) == expected


@pytest.mark.parametrize("u,expected", [(0.0, 0), (0.52, 0), (0.54, 1), (0.84, 1), (0.86, 2), (0.999, 2)])
def test_top_p_just_over_a_cumulative_mass_keeps_one_more_token(u, expected):
    # 0.5 + 0.3 = 0.8 < 0.81: token 2 is needed too (kept mass 0.95: cuts at 0.526 and 0.842).
    assert pick(logits_of(PROBS), u, top_p=0.81) == expected


def test_a_top_p_the_first_token_reaches_keeps_only_it():
    assert {pick(logits_of(PROBS), u, top_p=0.4) for u in (0.0, 0.5, 0.999)} == {0}


@pytest.mark.parametrize("u,expected", [(0.40, 0), (0.45, 1), (0.95, 2)])
def test_temperature_flattens_the_distribution_before_the_cut(u, expected):
    # At temperature 2 the probabilities are sqrt(p) renormalised: 0.379, 0.293, 0.207, 0.120;
    # top_p 0.7 now keeps three tokens (cuts at 0.431 and 0.765 of their mass). At temperature 1
    # the same uniforms would give 0, 1, 1.
    assert pick(logits_of(PROBS), u, top_p=0.7, temperature=2.0) == expected
    assert pick(logits_of(PROBS), u, top_p=0.7, temperature=2.0) == reference_pick(PROBS, u, 0.7, 2.0)


def test_a_low_temperature_sharpens_towards_the_most_likely_token():
    # At temperature 0.5, p^2 renormalised: 0.676, 0.243, ...: top_p 0.7 keeps tokens 0 and 1.
    assert pick(logits_of(PROBS), 0.70, top_p=0.7, temperature=0.5) == 0
    assert pick(logits_of(PROBS), 0.75, top_p=0.7, temperature=0.5) == 1
    assert reference_pick(PROBS, 0.75, 0.7, 0.5) == 1


def test_picks_are_token_ids_not_ranks():
    order = [7, 2, 9, 0]  # the most likely token is id 7
    picks = [pick(logits_of(PROBS, order), u, top_p=0.81) for u in (0.1, 0.6, 0.9)]
    assert picks == [7, 2, 9]


def test_each_row_uses_its_own_uniform():
    logits = torch.cat([logits_of(PROBS), logits_of(PROBS[::-1])])
    picked = _nucleus_pick(logits, torch.tensor([0.9, 0.1]), 0.81, 1.0)
    assert picked.tolist() == [2, 3]


def test_a_wide_nucleus_beyond_the_first_candidates_matches_the_definition():
    # 300 tokens of slowly falling probability: 0.9 of the mass needs far more than the first 64 candidates.
    weights = [1.0 / (1 + 0.01 * i) for i in range(300)]
    total = sum(weights)
    probs = [w / total for w in weights]
    logits = torch.tensor([[math.log(p) for p in probs]])
    for u in (0.0, 0.3, 0.7, 0.95, 0.999):
        assert pick(logits, u, top_p=0.9) == reference_pick(probs, u, 0.9, 1.0), u
    assert pick(logits, 0.999, top_p=0.9) > 200


def test_a_nucleus_whose_mass_reaches_top_p_exactly_takes_no_further_token():
    # Powers of two are exact in float32: tokens 0 and 1 hold exactly 0.75, so token 2 is not kept.
    probs = [0.5, 0.25, 0.125, 0.0625, 0.0625]
    assert pick(logits_of(probs), 0.9, top_p=0.75) == 1
    assert reference_pick(probs, 0.9, 0.75, 1.0) == 1


def test_a_top_p_of_one_can_pick_the_least_likely_token():
    assert pick(logits_of(PROBS), 0.999, top_p=1.0) == 3
    assert pick(logits_of(PROBS), 0.96, top_p=1.0) == 3
    assert pick(logits_of(PROBS), 0.94, top_p=1.0) == 2


def test_rows_of_different_distributions_and_scales_are_picked_independently():
    """Each row is normalised and cut on its own: a batch mixes captions at different steps."""
    other_probs, other_order = [0.6, 0.25, 0.1, 0.05], [3, 1, 0, 2]
    logits = torch.cat([logits_of(PROBS), logits_of(other_probs, other_order) + 5.0])
    for u_first, u_second in [(0.63, 0.2), (0.99, 0.75), (0.3, 0.95)]:
        picked = _nucleus_pick(logits, torch.tensor([u_first, u_second]), 0.7, 1.0).tolist()
        alone = [pick(logits[:1], u_first, top_p=0.7), pick(logits[1:], u_second, top_p=0.7)]
        expected = [
            reference_pick(PROBS, u_first, 0.7, 1.0),
            other_order[reference_pick(other_probs, u_second, 0.7, 1.0)],
        ]
        assert alone == expected
        assert picked == expected


def test_an_empty_batch_picks_nothing():
    picked = _nucleus_pick(torch.empty(0, 5), torch.empty(0), 0.9, 1.0)
    assert picked.shape == (0,)


class RecordTopk(TorchFunctionMode):
    """Records how many candidates each ``topk`` call ranks."""

    def __init__(self):
        super().__init__()
        self.ks = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.Tensor.topk, torch.topk):
            self.ks.append(int(args[1] if len(args) > 1 else kwargs["k"]))
        return func(*args, **kwargs)


def test_a_small_nucleus_does_not_rank_the_whole_vocabulary():
    """BLIP-2 OPT has 50k tokens and a trained captioner's nucleus a handful: no full sort per step."""
    vocab = 50272
    head = [0.3, 0.25, 0.2, 0.15, 0.09]  # top_p 0.95 needs all five
    logits = torch.full((2, vocab), math.log(0.01 / (vocab - len(head))))
    logits[:, : len(head)] = torch.tensor([math.log(p) for p in head])
    with RecordTopk() as recorded:
        picked = _nucleus_pick(logits, torch.tensor([0.0, 0.999]), 0.95, 1.0)
    assert picked.tolist() == [0, 4]
    assert recorded.ks
    assert max(recorded.ks) < vocab
