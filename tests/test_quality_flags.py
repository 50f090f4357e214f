"""Quality flags: captions (empty, repetitive, degenerate), outlier geometry, and near-duplicate shapes."""

from __future__ import annotations

import functools
import itertools
import time

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from ulip2_pipeline.quality import geometry
from ulip2_pipeline.quality.captions import CAPTION_FLAGS, caption_flags
from ulip2_pipeline.quality.geometry import (
    DUPLICATE_DISTANCE,
    OutlierCheck,
    find_duplicates,
    fingerprint_distance,
    outlier_geometry,
    shape_fingerprint,
)

POINTS = 10_000  # the pipeline's point count (datasets.*.points.count)

# ---- surfaces sampled uniformly by area ------------------------------------------------------------------------


def sample_boxes(boxes: list[tuple[tuple, tuple]], n: int, rng: np.random.Generator) -> np.ndarray:
    """n points on the faces of axis-aligned boxes given as (centre, size), uniform by area."""
    faces = []  # (centre, size, normal axis, side, area)
    for centre, size in boxes:
        centre, size = np.asarray(centre, float), np.asarray(size, float)
        for axis in range(3):
            area = np.prod(np.delete(size, axis))
            faces += [(centre, size, axis, side, area) for side in (-0.5, 0.5)]
    areas = np.array([face[-1] for face in faces])
    which = rng.choice(len(faces), size=n, p=areas / areas.sum())
    points = np.empty((n, 3))
    for k, (centre, size, axis, side, _) in enumerate(faces):
        mine = which == k
        offset = (rng.random((mine.sum(), 3)) - 0.5) * size
        offset[:, axis] = side * size[axis]
        points[mine] = centre + offset
    return points


def cube(n, rng):
    return sample_boxes([((0, 0, 0), (1, 1, 1))], n, rng)


def sphere(n, rng):
    points = rng.normal(size=(n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def cylinder(n, rng, radius=0.5, height=2.0):
    side, cap = 2 * np.pi * radius * height, np.pi * radius**2
    part = rng.choice(3, size=n, p=np.array([side, cap, cap]) / (side + 2 * cap))  # side, bottom, top
    angle = rng.random(n) * 2 * np.pi
    r = np.where(part == 0, radius, radius * np.sqrt(rng.random(n)))
    z = np.select([part == 0, part == 1], [(rng.random(n) - 0.5) * height, -height / 2], height / 2)
    return np.stack([r * np.cos(angle), r * np.sin(angle), z], axis=1)


def torus(n, rng, big=1.0, small=0.3):
    u, v = rng.random(4 * n) * 2 * np.pi, rng.random(4 * n) * 2 * np.pi
    keep = rng.random(4 * n) * (big + small) < big + small * np.cos(v)  # area grows with the distance from the axis
    u, v = u[keep][:n], v[keep][:n]
    ring = big + small * np.cos(v)
    return np.stack([ring * np.cos(u), ring * np.sin(u), small * np.sin(v)], axis=1)


def cone(n, rng, radius=0.6, height=1.5):
    side, base = np.pi * radius * np.hypot(radius, height), np.pi * radius**2
    on_side = rng.random(n) < side / (side + base)
    angle = rng.random(n) * 2 * np.pi
    fraction = np.sqrt(rng.random(n))  # of the way from the apex (side) or the centre (base) to the rim
    z = np.where(on_side, height * (1 - fraction), 0.0)
    return np.stack([radius * fraction * np.cos(angle), radius * fraction * np.sin(angle), z], axis=1)


def chair(n, rng):
    legs = [((x, y, 0.225), (0.05, 0.05, 0.45)) for x in (-0.2, 0.2) for y in (-0.2, 0.2)]
    return sample_boxes(legs + [((0, 0, 0.475), (0.5, 0.5, 0.05)), ((0, 0.225, 0.75), (0.5, 0.05, 0.5))], n, rng)


def table(n, rng):
    legs = [((x, y, 0.35), (0.06, 0.06, 0.7)) for x in (-0.7, 0.7) for y in (-0.4, 0.4)]
    return sample_boxes(legs + [((0, 0, 0.72), (1.6, 1.0, 0.04))], n, rng)


SHAPES = {"cube": cube, "sphere": sphere, "cylinder": cylinder, "torus": torus, "cone": cone, "chair": chair,
          "table": table}  # fmt: skip


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def moved_copy(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotated at random, scaled, translated and shuffled."""
    moved = points @ random_rotation(rng).T * rng.uniform(0.05, 20.0) + rng.normal(scale=10.0, size=3)
    return moved[rng.permutation(len(moved))]


@functools.cache
def original(name: str) -> np.ndarray:
    return SHAPES[name](POINTS, np.random.default_rng(list(SHAPES).index(name)))


@functools.cache
def fingerprint_of(name: str) -> np.ndarray:
    return shape_fingerprint(original(name))


def copy_of(name: str, points: int = POINTS) -> np.ndarray:
    """Another sampling of the same surface, moved."""
    rng = np.random.default_rng(100 + list(SHAPES).index(name))
    return moved_copy(SHAPES[name](points, rng), rng)


# ---- captions --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", " \n\t "])
def test_an_empty_or_blank_caption_gets_only_the_empty_flag(text):
    assert caption_flags(text) == ["empty_caption"]


@pytest.mark.parametrize(
    "text",
    [
        "a white white white white toilet",
        "a chair with a chair with a chair with a chair",
        "a chair a chair a chair",
        "A cartoon cat, a cartoon cat, a cartoon cat.",
        "a a a chair",
    ],
)
def test_a_sampling_loop_is_a_repetitive_caption(text):
    assert caption_flags(text) == ["repetitive_caption"]


@pytest.mark.parametrize(
    "text",
    [
        "a red car with a red roof",
        "a chair with four legs and a back",
        "a small table with a small drawer and a small shelf",
        "a very very tall lamp",
        "a 3d model of a chair with 4 legs",
        "a t-shirt that doesn't fit.",
        "une chaise rouge à quatre pieds",
        "a wooden chair, a wooden table, a wooden bench",
        "a chair with a back and a bench with a back",  # three words said twice
    ],
)
def test_an_ordinary_caption_gets_no_flag(text):
    assert caption_flags(text) == []


@pytest.mark.parametrize(
    "text", ["!!!", "3 3 4 .", "<unk> <unk>", "a", "ok", "#### 12 abc", "chair!!!!!!!!!!!!", "[SEP] [SEP] chair"]
)
def test_a_caption_that_is_not_words_is_degenerate(text):
    assert caption_flags(text) == ["degenerate_caption"]


def test_a_looping_degenerate_caption_gets_both_flags_sorted():
    flags = caption_flags("<unk> <unk> <unk> <unk>")
    assert flags == ["degenerate_caption", "repetitive_caption"]
    assert set(flags) <= set(CAPTION_FLAGS)


def test_the_caption_thresholds_are_the_keywords():
    assert caption_flags("a white white white toilet", max_repeats=3) == []
    assert caption_flags("a white white white white toilet", max_repeats=3) == ["repetitive_caption"]
    red = "a red car with a red roof and a red door"  # "a red" three times, no three words twice
    assert caption_flags(red) == []
    assert caption_flags(red, ngram=2) == ["repetitive_caption"]
    assert caption_flags("a", min_letters=1) == []
    assert caption_flags("a cat", min_letters=5) == ["degenerate_caption"]


# ---- outlier geometry ------------------------------------------------------------------------------------------


def cube_with_far_speck(speck_points: int = 50) -> np.ndarray:
    """10,000 points on a unit cube and a tiny triangle 20 units away."""
    rng = np.random.default_rng(7)
    weights = rng.dirichlet(np.ones(3), size=speck_points)
    triangle = np.array([[20.0, 0, 0], [20.01, 0, 0], [20.0, 0.01, 0]])
    return np.vstack([cube(POINTS, rng), weights @ triangle])


def test_a_far_speck_beside_a_cube_is_outlier_geometry():
    check = outlier_geometry(cube_with_far_speck())
    assert check.flagged
    assert check.outlier_fraction == pytest.approx(50 / 10_050)
    assert check.spread > 20  # the speck is 20 units out, the cube's corners 0.87


def test_a_single_far_point_is_outlier_geometry():
    points = np.vstack([sphere(POINTS, np.random.default_rng(1)), [[0.0, 0.0, 5.0]]])
    check = outlier_geometry(points)
    assert check.flagged
    assert check.outlier_fraction == pytest.approx(1 / 10_001)


def l_shape(n, rng):
    return sample_boxes([((0, 0, 0), (2, 0.3, 0.3)), ((-0.85, 0.85, 0), (0.3, 2, 0.3))], n, rng)


def pole_on_sphere(n, rng):
    """A sphere with a thin pole 5 radii long growing out of it: far points, but attached."""
    pole = np.c_[np.zeros(100), np.zeros(100), np.linspace(1.0, 6.0, 100)]
    return np.vstack([sphere(n - 100, rng), pole])


NOT_OUTLIERS = {
    "cube": cube,
    "sphere": sphere,
    "rod 20:1": lambda n, rng: sample_boxes([((0, 0, 0), (0.1, 0.1, 2.0))], n, rng),
    "two cubes 3 apart": lambda n, rng: np.vstack([cube(n // 2, rng), cube(n // 2, rng) + [3.0, 0, 0]]),
    "L-shape": l_shape,
    "sparse uniform": lambda n, rng: rng.random((60, 3)),
    "cone": cone,
    "pole on a sphere": pole_on_sphere,
}


@pytest.mark.parametrize("name", NOT_OUTLIERS)
def test_an_ordinary_shape_is_not_outlier_geometry(name):
    check = outlier_geometry(NOT_OUTLIERS[name](POINTS, np.random.default_rng(3)))
    assert not check.flagged
    assert check.outlier_fraction == 0.0


def test_a_far_group_larger_than_max_fraction_is_a_part_not_outliers():
    rng = np.random.default_rng(4)
    far_part = cube(500, rng) * 0.2 + [20.0, 0, 0]  # 5 % of the points
    points = np.vstack([cube(POINTS, rng), far_part])
    check = outlier_geometry(points)
    assert not check.flagged
    assert check.spread < 1.1  # the far part is inside the core radius
    assert outlier_geometry(points, max_fraction=0.1).flagged


def test_a_speck_closer_than_min_spread_core_radii_is_not_outlier_geometry():
    points = np.vstack([sphere(POINTS, np.random.default_rng(5)), [[0.0, 0.0, 1.8]]])  # 0.8 above the surface
    assert not outlier_geometry(points).flagged
    assert outlier_geometry(points, min_spread=1.5).flagged
    assert not outlier_geometry(points, min_spread=1.5, min_gap=1.0).flagged  # the gap to the sphere is 0.8 radii


def test_outlier_geometry_is_deterministic_and_fast():
    points = cube_with_far_speck()
    assert outlier_geometry(points) == outlier_geometry(points[::-1].copy())
    best = min(_seconds(outlier_geometry, points) for _ in range(5))
    assert best < 0.05


def _seconds(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def test_a_collapsed_cloud_with_one_stray_point_is_outlier_geometry():
    points = np.vstack([np.zeros((99, 3)), [[1.0, 0.0, 0.0]]])
    assert outlier_geometry(points) == OutlierCheck(flagged=True, outlier_fraction=0.01, spread=float("inf"))
    assert outlier_geometry(np.zeros((1, 3))) == OutlierCheck(flagged=False, outlier_fraction=0.0, spread=1.0)


def test_outlier_geometry_refuses_points_that_are_not_xyz():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        outlier_geometry(np.zeros((10, 2)))


# ---- shape fingerprints ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHAPES)
def test_a_rotated_scaled_translated_resampled_copy_is_a_duplicate_of_the_original(name):
    assert fingerprint_distance(fingerprint_of(name), shape_fingerprint(copy_of(name))) <= DUPLICATE_DISTANCE


@pytest.mark.parametrize("name", SHAPES)
def test_two_samplings_of_2048_points_are_duplicates_too(name):
    """The smallest prefix the pipeline keeps; fewer points give noisier profiles."""
    first = SHAPES[name](2_048, np.random.default_rng(200))
    assert fingerprint_distance(shape_fingerprint(first), shape_fingerprint(copy_of(name, 2_048))) <= DUPLICATE_DISTANCE


@pytest.mark.parametrize("first,second", list(itertools.combinations(SHAPES, 2)))
def test_different_shapes_are_not_duplicates(first, second):
    assert fingerprint_distance(fingerprint_of(first), fingerprint_of(second)) > DUPLICATE_DISTANCE


def test_a_cube_stretched_by_30_percent_is_not_a_duplicate_but_by_2_percent_is():
    stretched = [sample_boxes([((0, 0, 0), (1, 1, s))], POINTS, np.random.default_rng(9)) for s in (1.3, 1.02)]
    assert fingerprint_distance(fingerprint_of("cube"), shape_fingerprint(stretched[0])) > DUPLICATE_DISTANCE
    assert fingerprint_distance(fingerprint_of("cube"), shape_fingerprint(stretched[1])) <= DUPLICATE_DISTANCE


def caps_on_sphere(directions, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points on the unit sphere, in small caps around the given directions."""
    directions = np.asarray(directions, dtype=float)
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    points = directions[rng.integers(0, len(directions), n)] + rng.normal(scale=0.15, size=(n, 3))
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def test_clouds_alike_in_radius_and_spread_are_told_apart_by_their_pair_distances():
    """All three lie on the unit sphere with equal spread along every axis: only the pair distances differ."""
    rng = np.random.default_rng(13)
    clouds = [
        sphere(POINTS, rng),
        caps_on_sphere(list(itertools.product((-1, 1), repeat=3)), POINTS, rng),  # the cube's corners
        caps_on_sphere(np.vstack([np.eye(3), -np.eye(3)]), POINTS, rng),  # the octahedron's corners
    ]
    prints = [shape_fingerprint(cloud) for cloud in clouds]
    for first, second in itertools.combinations(prints, 2):
        assert fingerprint_distance(first, second) > DUPLICATE_DISTANCE


def test_a_mirror_image_is_a_duplicate():
    """Three arms of different lengths along x, y and z: no rotation turns it into its mirror image."""
    arms = [((0.5, 0, 0), (1.0, 0.1, 0.1)), ((0, 1.0, 0), (0.1, 2.0, 0.1)), ((0, 0, 1.5), (0.1, 0.1, 3.0))]
    handed = sample_boxes(arms, POINTS, np.random.default_rng(14))
    mirrored = handed * [-1.0, 1.0, 1.0]
    assert fingerprint_distance(shape_fingerprint(handed), shape_fingerprint(mirrored)) <= DUPLICATE_DISTANCE


def test_the_fingerprint_ignores_the_order_of_the_points_exactly():
    points = original("table")
    shuffled = points[np.random.default_rng(11).permutation(len(points))]
    np.testing.assert_array_equal(shape_fingerprint(shuffled), fingerprint_of("table"))


def test_the_fingerprint_is_a_float32_vector_of_two_profiles_three_eigenvalues_and_an_axial_profile():
    print16 = shape_fingerprint(original("torus"), bins=16)
    assert print16.dtype == np.float32
    assert print16.shape == (4 * 16 + 3,)
    assert fingerprint_of("torus").shape == (4 * 32 + 3,)
    eigen = print16[32:35]
    assert eigen.sum() == pytest.approx(1.0, abs=1e-5)  # eigenvalues of a cloud with unit RMS radius
    assert np.all(np.diff(eigen) <= 0)


def test_a_cylinder_and_a_box_of_the_same_proportions_are_not_duplicates():
    """Their distance profiles nearly agree (a demo mug and crate lay 0.024 apart without the axial profile)."""
    rng = np.random.default_rng(5)
    n = 10_000
    angle, height = rng.uniform(0, 2 * np.pi, n), rng.uniform(-1, 1, n)
    cylinder = np.stack([0.5 * np.cos(angle), 0.5 * np.sin(angle), height], axis=1)
    side = rng.integers(0, 4, n)
    along = rng.uniform(-0.45, 0.45, n)
    box = np.stack(
        [
            np.where(side < 2, np.where(side == 0, -0.45, 0.45), along),
            np.where(side < 2, along, np.where(side == 2, -0.45, 0.45)),
            height,
        ],
        axis=1,
    )
    assert fingerprint_distance(shape_fingerprint(cylinder), shape_fingerprint(box)) > DUPLICATE_DISTANCE


def test_the_fingerprint_leaves_the_global_random_state_alone():
    np.random.seed(1)
    before = np.random.get_state()[1].copy()
    first = shape_fingerprint(original("cone"))
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    np.random.seed(2)
    np.testing.assert_array_equal(shape_fingerprint(original("cone")), first)


def test_a_cloud_without_extent_fingerprints_to_zeros():
    assert not shape_fingerprint(np.ones((5, 3))).any()
    assert not shape_fingerprint(np.zeros((1, 3))).any()


# ---- finding duplicates ----------------------------------------------------------------------------------------


def test_of_two_copies_the_later_maps_to_the_first():
    uids = ["cube", "sphere", "cube-copy", "torus"]
    prints = np.stack([fingerprint_of("cube"), fingerprint_of("sphere"), shape_fingerprint(copy_of("cube")),
                       fingerprint_of("torus")])  # fmt: skip
    assert find_duplicates(uids, prints) == {"cube-copy": "cube"}
    assert find_duplicates(uids[::-1], prints[::-1]) == {"cube": "cube-copy"}


def test_every_shape_and_its_copy_pair_up_and_nothing_else():
    uids = [f"{name}{suffix}" for suffix in ("", "-copy") for name in SHAPES]
    prints = np.stack([fingerprint_of(name) for name in SHAPES] + [shape_fingerprint(copy_of(n)) for n in SHAPES])
    assert find_duplicates(uids, prints) == {f"{name}-copy": name for name in SHAPES}


def test_a_chain_maps_to_the_first_object_within_threshold():
    base = fingerprint_of("cube").astype(np.float64)
    step = np.zeros(len(base))
    step[0] = 1.0
    a, b = base, base + 0.75 * DUPLICATE_DISTANCE * step
    near_c = base + 0.9 * DUPLICATE_DISTANCE * step  # within threshold of a and b
    far_c = base + 1.5 * DUPLICATE_DISTANCE * step  # within threshold of b only
    assert find_duplicates(["a", "b", "c"], np.stack([a, b, near_c])) == {"b": "a", "c": "a"}
    assert find_duplicates(["a", "b", "c"], np.stack([a, b, far_c])) == {"b": "a", "c": "b"}


def test_a_pair_exactly_at_the_threshold_is_a_duplicate():
    prints = np.zeros((2, 8))
    prints[1, 3] = 0.5
    assert find_duplicates(["a", "b"], prints, threshold=0.5) == {"b": "a"}
    assert find_duplicates(["a", "b"], prints, threshold=0.49) == {}


@pytest.mark.parametrize("batch", [16_384, 50])
def test_find_duplicates_agrees_with_comparing_all_pairs_in_crowds(batch, monkeypatch):
    """Crowds larger than the candidates fetched per object take the halving search; all must agree,
    whatever the number of objects queried at once."""
    monkeypatch.setattr(geometry, "_QUERY_BATCH", batch)
    rng = np.random.default_rng(12)
    centres = rng.normal(scale=0.3, size=(4, 67))
    spread = np.array([0.002, 0.004, 0.006, 0.5])  # tight crowds, a loose one (many near misses), scattered
    crowd = rng.integers(0, 4, 1_500)
    prints = (centres[crowd] + rng.normal(size=(1_500, 67)) * spread[crowd, None]).astype(np.float32)
    uids = [f"u{i}" for i in range(len(prints))]
    distance = cdist(prints.astype(np.float64), prints.astype(np.float64))
    expected = {}
    for i in range(len(prints)):
        earlier = np.flatnonzero(distance[i, :i] <= DUPLICATE_DISTANCE)
        if len(earlier):
            expected[uids[i]] = uids[earlier[0]]
    assert 500 < len(expected) < 1_400
    assert find_duplicates(uids, prints) == expected


def test_find_duplicates_handles_no_objects_and_refuses_mismatched_inputs():
    assert find_duplicates([], np.zeros((0, 67))) == {}
    assert find_duplicates(["only"], np.zeros((1, 67))) == {}
    with pytest.raises(ValueError, match="one fingerprint row per uid"):
        find_duplicates(["a", "b"], np.zeros((3, 67)))
