"""The stroke renderer reproduces the official bitmaps; the synthetic doodles are valid, stable data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quickdraw_cnn.categories import all_categories, file_stem
from quickdraw_cnn.npy_format import open_bitmaps, read_header
from quickdraw_cnn.render import RDP_EPSILON, prepare_strokes, rdp, render_strokes
from quickdraw_cnn.synthetic import (
    SYNTHETIC_CATEGORIES,
    class_rng,
    generate_class,
    generate_strokes,
    write_synthetic,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL = SHARED / "data" / "quickdraw-real"
# The shared bitmaps/clock.npy holds the official *alarm clock* rows: each of its first 25 rows matches
# the alarm clock strokes (r > 0.99) and none matches the clock strokes (r < 0.4); see the test below.
STROKES_FOR = {"clock": "alarm clock"}
UNIT_PX = 28 / 304  # output pixels per stroke unit in the official recipe


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.astype(np.float64).ravel(), b.astype(np.float64).ravel())[0, 1])


def simplified(name: str, n: int = 25) -> list:
    lines = (REAL / "simplified" / f"{name}.ndjson").read_text(encoding="utf-8").splitlines()[:n]
    return [json.loads(line)["drawing"] for line in lines]


def official_pairs() -> list[tuple[str, list, np.ndarray]]:
    """(class, strokes, official 28x28) for the first 25 rows of every class in bitmaps/."""
    pairs = []
    for path in sorted((REAL / "bitmaps").glob("*.npy")):
        if path.stem == "train":  # every 100th row, not the first rows
            continue
        name = path.stem.replace("_", " ")
        bitmaps = open_bitmaps(path)
        for i, strokes in enumerate(simplified(STROKES_FOR.get(name, name))):
            pairs.append((name, strokes, np.asarray(bitmaps[i]).reshape(28, 28)))
    return pairs


needs_real = pytest.mark.skipif(not (REAL / "bitmaps").is_dir(), reason="../shared real data absent")


# --- (a) the official rendering ---------------------------------------------------------------------


@needs_real
def test_reproduces_official_bitmaps():
    pairs = official_pairs()
    assert len(pairs) == 19 * 25
    scores = np.array([corr(render_strokes(strokes), official) for _, strokes, official in pairs])
    # The issue demands a mean of 0.995; this renderer measures ~0.9997 (bench/bench_render.py).
    assert scores.mean() >= 0.995, scores.mean()
    worst = int(scores.argmin())
    assert scores.min() >= 0.99, (pairs[worst][0], worst % 25, scores.min())


@needs_real
def test_shared_clock_file_holds_alarm_clock_rows():
    bitmaps = open_bitmaps(REAL / "bitmaps" / "clock.npy")
    alarm = [corr(render_strokes(s), bitmaps[i]) for i, s in enumerate(simplified("alarm clock"))]
    clock = [corr(render_strokes(s), bitmaps[i]) for i, s in enumerate(simplified("clock"))]
    assert min(alarm) > 0.99
    assert max(clock) < 0.6


@needs_real
def test_prepare_is_nearly_identity_on_simplified_strokes():
    # Already aligned, scaled and simplified: preparing again must not change the picture.
    for strokes in simplified("cat", 10):
        assert corr(render_strokes(prepare_strokes(strokes)), render_strokes(strokes)) > 0.99


# --- (b) renderer properties ------------------------------------------------------------------------

SQUARE = [[[0, 255, 255, 0, 0], [0, 0, 255, 255, 0]]]


def centroid(image: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    w = image.astype(np.float64)
    return float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())


def test_shape_dtype_and_polarity():
    image = render_strokes(SQUARE)
    assert image.shape == (28, 28) and image.dtype == np.uint8
    assert image.max() == 255  # light strokes
    assert image[0, 0] == image[-1, -1] == 0 and np.median(image) == 0  # on black
    big = render_strokes(SQUARE, size=64)
    assert big.shape == (64, 64) and big.dtype == np.uint8


@pytest.mark.parametrize(
    "strokes",
    [SQUARE, [[[0, 100, 100], [0, 0, 40]]], [[[0, 30], [0, 255]]], [[[0, 255], [0, 0]]]],
)
def test_drawing_is_centred(strokes):
    cx, cy = centroid(render_strokes(strokes))
    # Symmetric shapes must land on the frame centre; an L-shape's centroid stays within its box.
    if strokes is SQUARE or len(strokes[0][0]) == 2:
        assert abs(cx - 13.5) < 0.05 and abs(cy - 13.5) < 0.05
    else:
        assert 10 < cx < 17 and 10 < cy < 17


def test_horizontal_line_span_and_width():
    image = render_strokes([[[0, 255], [0, 0]]]).astype(np.float64)
    row = image[13:15].max(axis=0)
    assert 23 <= int((row > 127).sum()) <= 24  # 255 units -> 23.5 px between the end centres
    assert np.all(image[:11] == 0) and np.all(image[17:] == 0)
    # Stroke width: column coverage integrates to 16 units = ~1.47 px.
    width = image[:, 8:20].sum(axis=0) / 255.0
    assert np.allclose(width, 16 * UNIT_PX, atol=0.05), width


def test_dot_is_a_round_blob():
    dot = render_strokes([[[0], [0]]]).astype(np.float64)  # a prepared dot sits at the origin
    area = dot.sum() / 255.0
    assert area == pytest.approx(np.pi * (8 * UNIT_PX) ** 2, rel=0.06)
    assert np.array_equal(render_strokes([[[0, 0], [0, 0]]]), dot.astype(np.uint8))
    cx, cy = centroid(dot)
    assert abs(cx - 13.5) < 0.05 and abs(cy - 13.5) < 0.05


def test_overlapping_strokes_composite_like_cairo():
    # cairo paints each stroke OVER the canvas: a stroke traced twice (as two strokes) gets brighter
    # soft edges, while one stroke retracing itself does not.
    one = render_strokes([[[0, 255], [3, 3]]]).astype(int)
    twice = render_strokes([[[0, 255], [3, 3]], [[0, 255], [3, 3]]]).astype(int)
    retrace = render_strokes([[[0, 255, 0], [3, 3, 3]]]).astype(int)
    assert np.array_equal(one, retrace)
    assert (twice >= one).all() and (twice > one).any()


def test_empty_input_raises():
    for bad in ([], None, [[[], []]]):
        with pytest.raises(ValueError, match="no strokes"):
            render_strokes(bad)
        with pytest.raises(ValueError, match="no strokes"):
            prepare_strokes(bad)


def test_mismatched_stroke_raises():
    with pytest.raises(ValueError, match="stroke 0"):
        render_strokes([[[1, 2, 3], [1, 2]]])


def test_rdp():
    line = np.stack([np.arange(10.0), np.zeros(10)], axis=1)
    assert np.array_equal(rdp(line), line[[0, -1]])
    corner = np.array([[0, 0], [5, 0], [10, 0], [10, 5], [10, 10]], dtype=float)
    assert np.array_equal(rdp(corner), corner[[0, 2, 4]])
    bump = np.array([[0, 0], [5, 1.9], [10, 0]])  # within epsilon 2.0: dropped
    assert len(rdp(bump)) == 2
    bump[1, 1] = 2.1  # beyond: kept
    assert len(rdp(bump)) == 3
    back = np.array([[0, 0], [0, 50], [0, 20]], dtype=float)  # doubles back: the turn is ink, kept
    assert np.array_equal(rdp(back), back)


def test_prepare_output_format():
    raw = [[[10, 20.5, 400], [300, 310, 305], [0, 16, 33]], [[50], [50], [70]]]  # with times; a dot
    out = prepare_strokes(raw)
    assert len(out) == 2 and len(out[1][0]) == 1
    xs = np.concatenate([s[0] for s in out])
    ys = np.concatenate([s[1] for s in out])
    assert xs.min() == 0 and ys.min() == 0 and xs.max() == 255  # longest side (x) scaled to 255
    assert ys.max() < 255  # aspect kept
    assert all(isinstance(v, int) for s in out for v in s[0] + s[1])
    # Resampled and simplified: a long straight stroke keeps just its ends.
    assert prepare_strokes([[list(range(0, 1000, 3)), [7] * 334]]) == [[[0, 255], [0, 0]]]


def test_prepare_zero_extent_is_a_centred_dot():
    out = prepare_strokes([[[42, 42], [17, 17]], [[42], [17]]])
    assert out == [[[0], [0]], [[0], [0]]]
    cx, cy = centroid(render_strokes(out))
    assert abs(cx - 13.5) < 0.05 and abs(cy - 13.5) < 0.05


@pytest.mark.parametrize("k, c", [(0.1, (0, 0)), (3.7, (500, -200)), (1.0, (12.5, 7.25))])
def test_prepare_invariant_to_translation_and_scale(k, c):
    rng = np.random.default_rng(1)
    base = generate_strokes("star", rng)
    moved = [[[x * k + c[0] for x in xs], [y * k + c[1] for y in ys]] for xs, ys in base]
    a, b = render_strokes(prepare_strokes(base)), render_strokes(prepare_strokes(moved))
    assert corr(a, b) > 0.995
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


coordinate = st.floats(-1e4, 1e4, allow_nan=False)
stroke = st.integers(1, 30).flatmap(
    lambda n: st.tuples(st.lists(coordinate, min_size=n, max_size=n), st.lists(coordinate, min_size=n, max_size=n))
)


def test_a_stroke_doubling_back_may_lose_its_tip_within_rdps_epsilon() -> None:
    """Found by hypothesis in a fresh CI-like run: up 2.5 units, back down 255. The samples nearest the
    tip are 254.5, 2.0 beyond the chord's end at 252.5: not beyond RDP's epsilon, so dropped."""
    assert prepare_strokes([[[0.0, 0.0, 0.0, 0.0], [4633.0, 4692.0, 0.0, -1402.0]]]) == [[[0, 0], [253, 0]]]
    assert RDP_EPSILON == 2.0  # the data set's


@pytest.mark.parametrize("tiny", [2.2250738585e-313, 1e-12])
def test_vanishing_extent_is_a_dot_not_nan(tiny: float) -> None:
    """Found by hypothesis: a denormal extent made 255/extent overflow to inf and the points NaN."""
    assert prepare_strokes([[[0.0, 0.0], [0.0, tiny]]]) == [[[0], [0]]]


@settings(max_examples=150, deadline=None)
@given(st.lists(stroke.map(list), min_size=1, max_size=6))
def test_any_strokes_prepare_and_render(strokes):
    prepared = prepare_strokes(strokes)
    assert len(prepared) == len(strokes)
    values = [v for xs, ys in prepared for v in xs + ys]
    assert all(isinstance(v, int) and 0 <= v <= 255 for v in values)
    # Longest side scaled to 255 (or a dot at the origin); resampling at 1-unit steps may shave half a
    # unit off a sharp extreme, as in the official simplified data (where 10% of drawings top out at 254),
    # and where a stroke doubles back, RDP drops a turning point within its epsilon of the chord.
    assert max(values) >= 255 - 0.5 - RDP_EPSILON - 0.5 or max(values) == 0
    image = render_strokes(prepared)
    assert image.shape == (28, 28) and image.dtype == np.uint8 and image.max() > 0
    rows, cols = np.nonzero(image)
    assert rows.min() >= 1 and cols.min() >= 1 and rows.max() <= 26 and cols.max() <= 26  # margin kept


def test_prepare_matches_rdp_of_resampled_stroke():
    # Two strokes prepared together give what each gives alone once scaled the same way.
    a = [[0.0, 100.0, 200.0, 200.0], [0.0, 40.0, 0.0, 100.0]]
    b = [[50.0, 60.0], [200.0, 255.0]]
    both = prepare_strokes([a, b])
    assert both[0] == prepare_strokes([a, [[0, 255], [0, 255]]])[0]  # same bounding box 0..255
    assert both[1] == [[50, 60], [200, 255]]


# --- (c) synthetic doodles --------------------------------------------------------------------------


def test_synthetic_categories_are_real_names():
    assert 8 <= len(SYNTHETIC_CATEGORIES) <= 12
    assert set(SYNTHETIC_CATEGORIES) <= set(all_categories())


def test_write_synthetic_files_and_determinism(tmp_path):
    names = ["circle", "square", "zigzag"]
    paths = write_synthetic(tmp_path / "a", categories=names, per_class=30, seed=3)
    assert [p.name for p in paths] == [f"{file_stem(n)}.npy" for n in names]
    for p in paths:
        assert read_header(p)[0] == 30
    assert not list((tmp_path / "a").glob("*.part"))
    again = write_synthetic(tmp_path / "b", categories=names, per_class=30, seed=3)
    other = write_synthetic(tmp_path / "c", categories=names, per_class=30, seed=4)
    for p, q, r in zip(paths, again, other):
        assert p.read_bytes() == q.read_bytes()
        assert p.read_bytes() != r.read_bytes()
    # A class's drawings depend only on (seed, name), not on which other classes were asked for.
    alone = write_synthetic(tmp_path / "d", categories=["zigzag"], per_class=30, seed=3)
    assert alone[0].read_bytes() == paths[2].read_bytes()


def test_synthetic_classes_differ_and_vary():
    means = {}
    for name in SYNTHETIC_CATEGORIES:
        images = generate_class(name, 40, class_rng(name, 0)).astype(np.float64)
        assert images.shape == (40, 784)
        assert (images.max(axis=1) > 200).all()  # every drawing has ink
        assert len({row.tobytes() for row in images.astype(np.uint8)}) == 40  # all different
        means[name] = images.mean(axis=0)
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert corr(means[a], means[b]) < 0.98, (a, b)


def test_synthetic_unknown_category():
    with pytest.raises(ValueError, match=r"'cat'.*supported: circle"):
        write_synthetic("/nonexistent", categories=["circle", "cat"])
    with pytest.raises(ValueError, match="'cat'"):
        generate_strokes("cat", np.random.default_rng(0))
