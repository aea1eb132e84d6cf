"""Tests of the built-in demo dataset and of the exactness of its ground truth."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.demo import NEAR_EDITS, NON_FACE_KINDS, Demo, demo_dataset, make_demo
from ferclean.demo.make import _build, _build_cached

GROUP_COLUMNS = ["group", "kind", "rows", "edits", "labels", "splits", "conflict", "cross_split"]


# `demo` (the default demo) is the session fixture of tests/conftest.py.
@pytest.fixture(scope="module")
def small() -> Demo:
    return make_demo(seed=3, n_faces=300)


@pytest.fixture(scope="module", params=["default", "small"])
def any_demo(request, demo, small) -> Demo:
    return demo if request.param == "default" else small


# ---------------------------------------------------------------------- helpers
def identical_sets(pixels: np.ndarray) -> set[frozenset[int]]:
    """Sets of rows with identical pixels, computed from the pixels alone."""
    _, inverse, counts = np.unique(
        pixels.reshape(len(pixels), -1), axis=0, return_inverse=True, return_counts=True
    )
    members = defaultdict(set)
    for row, key in enumerate(inverse.reshape(-1)):
        if counts[key] > 1:
            members[int(key)].add(row)
    return {frozenset(m) for m in members.values()}


def copy_rows(demo: Demo) -> set[int]:
    """Rows planted as copies (every group member that is not the original)."""
    out = set()
    for rows, edits in zip(demo.truth.groups.rows, demo.truth.groups.edits, strict=True):
        out |= {r for r, e in zip(rows, edits, strict=True) if e != "original"}
    return out


def base_rows(demo: Demo) -> np.ndarray:
    """Rows of the drawn faces: everything except planted copies and non-faces."""
    drop = copy_rows(demo) | demo.truth.non_face_rows()
    return np.array(sorted(set(range(len(demo.dataset))) - drop))


def near_pairs(demo: Demo) -> list[tuple[int, int, str]]:
    """(original row, copy row, edit) of every near group."""
    groups = demo.truth.groups
    out = []
    near = groups[groups.kind == "near"]
    for rows, edits in zip(near.rows, near.edits, strict=True):
        original = rows[edits.index("original")]
        (copy, edit), *rest = [(r, e) for r, e in zip(rows, edits, strict=True) if e != "original"]
        assert not rest
        out.append((original, copy, edit))
    return out


def mad(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute pixel difference over the last two axes."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(-2, -1))


# ---------------------------------------------------------------------- the dataset
def test_shapes_dtypes_and_ids(any_demo):
    ds = any_demo.dataset
    n = len(ds)
    assert isinstance(ds, FaceDataset)
    assert ds.pixels.shape == (n, 48, 48) and ds.pixels.dtype == np.uint8
    assert ds.labels.dtype == np.int8 and ds.labels.min() >= 0 and ds.labels.max() < len(EMOTIONS)
    assert ds.splits.dtype == np.int8 and set(np.unique(ds.splits)) == {0, 1, 2}
    assert ds.rows.dtype == np.int64 and np.array_equal(ds.rows, np.arange(n))
    assert ds.ids.tolist() == [f"demo-{r:05d}" for r in range(n)]
    assert ds.source == "demo"


def test_default_size(demo):
    # 1500 drawn faces plus ~11% planted copies and non-faces.
    assert 1600 <= len(demo.dataset) <= 1750


def test_split_order_and_shares(any_demo):
    ds = any_demo.dataset
    assert np.all(np.diff(ds.splits) >= 0), "rows must run Training, PublicTest, PrivateTest"
    shares = np.bincount(ds.splits, minlength=3) / len(ds)
    assert 0.75 <= shares[0] <= 0.85
    assert 0.07 <= shares[1] <= 0.13 and 0.07 <= shares[2] <= 0.13


def test_rows_are_shuffled_within_splits(demo):
    # Copies and non-faces are created last; a shuffle spreads them through each split.
    train = np.flatnonzero(demo.dataset.splits == 0)
    planted = sorted((copy_rows(demo) | demo.truth.non_face_rows()) & set(train.tolist()))
    assert planted[0] < len(train) // 4 and planted[-1] > 3 * len(train) // 4


def test_same_seed_same_data_and_other_seed_other_data(small):
    again = _build(3, 300).fresh()  # drawn anew, not the cached demo
    assert again.dataset.equals(small.dataset, ids=True)
    assert again.dataset.checksum() == small.dataset.checksum()
    assert again.truth.groups.equals(small.truth.groups)
    assert again.truth.non_faces.equals(small.truth.non_faces)
    other = make_demo(seed=4, n_faces=300)
    assert other.dataset.checksum() != small.dataset.checksum()
    n = min(len(other.dataset), len(small.dataset))
    assert not np.array_equal(other.dataset.pixels[:n], small.dataset.pixels[:n])


def test_cache_builds_each_demo_once(small):
    before = _build_cached.cache_info()
    again = make_demo(seed=np.int64(3), n_faces=300)  # a numpy integer is the same seed
    after = _build_cached.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    assert again.dataset.equals(small.dataset, ids=True)
    assert again.truth.groups.equals(small.truth.groups)


def test_cached_demos_do_not_share_arrays(small):
    mine = make_demo(seed=3, n_faces=300)
    for name in ("pixels", "labels", "splits", "ids"):
        assert not np.shares_memory(getattr(mine.dataset, name), getattr(small.dataset, name))
    assert mine.dataset.pixels.flags.writeable
    checksum = small.dataset.checksum()
    mine.dataset.pixels[:] = 0  # a caller that writes into its demo ...
    mine.dataset.labels[:] = 0
    mine.truth.groups.loc[:, "kind"] = "near"
    mine.truth.groups.at[0, "rows"] = (0,)
    mine.truth.non_faces.loc[:, "kind"] = "text"
    fresh = make_demo(seed=3, n_faces=300)  # ... changes neither later demos nor others
    assert fresh.dataset.checksum() == checksum == small.dataset.checksum()
    assert fresh.truth.groups.equals(small.truth.groups) and len(fresh.truth.groups) > 0
    assert fresh.truth.non_faces.equals(small.truth.non_faces)
    cached = _build_cached(3, 300)
    assert not cached.pixels.flags.writeable  # the cache itself cannot be written into


def test_generator_seeds_are_not_cached():
    before = _build_cached.cache_info()
    rng = np.random.default_rng(11)
    first = make_demo(seed=rng, n_faces=100)
    second = make_demo(seed=rng, n_faces=100)  # the generator moved on: another demo
    assert _build_cached.cache_info().currsize == before.currsize
    assert not first.dataset.equals(second.dataset)
    assert first.dataset.equals(make_demo(seed=np.random.default_rng(11), n_faces=100).dataset)


def test_demo_dataset_is_make_demo_dataset(small):
    assert demo_dataset(seed=3, n_faces=300).equals(small.dataset, ids=True)


def test_class_imbalance_like_fer(any_demo):
    ds = any_demo.dataset
    train = ds.label_counts("Training")
    assert min(train, key=train.get) == "disgust"
    assert max(train, key=train.get) == "happy"
    assert ds.label_counts()["disgust"] >= 12
    assert all(count > 0 for count in train.values())


def test_too_few_faces_is_an_error():
    with pytest.raises(ValueError, match="n_faces"):
        make_demo(n_faces=20)


# ---------------------------------------------------------------------- the truth table
def test_truth_table_agrees_with_dataset(any_demo):
    ds, groups = any_demo.dataset, any_demo.truth.groups
    assert list(groups.columns) == GROUP_COLUMNS
    assert groups.group.tolist() == list(range(len(groups)))
    assert set(groups.kind) == {"exact", "near"}
    seen: set[int] = set()
    for g in groups.itertuples():
        rows = list(g.rows)
        assert rows == sorted(rows) and len(set(rows)) == len(rows)
        assert seen.isdisjoint(rows), "a row belongs to two planted groups"
        seen |= set(rows)
        assert len(g.edits) == len(g.labels) == len(g.splits) == len(rows)
        assert g.labels == tuple(int(ds.labels[r]) for r in rows)
        assert g.splits == tuple(SPLITS[int(ds.splits[r])] for r in rows)
        assert g.conflict == (len(set(g.labels)) > 1)
        assert g.cross_split == (len(set(g.splits)) > 1)
        assert g.edits.count("original") == 1
        if g.kind == "exact":
            assert 2 <= len(rows) <= 4
            assert set(g.edits) == {"original", "exact"}
        else:
            assert len(rows) == 2
            assert set(g.edits) - {"original"} <= set(NEAR_EDITS)
    assert seen.isdisjoint(any_demo.truth.non_face_rows())


def test_exact_groups_are_exactly_the_identical_sets(any_demo):
    # The heart of the truth: nothing identical that is not planted, nothing planted
    # that is not identical.
    found = identical_sets(any_demo.dataset.pixels)
    assert found == set(any_demo.truth.exact_groups())


def test_exact_group_mix(demo):
    truth, ds = demo.truth, demo.dataset
    exact = truth.exact_groups()
    assert 35 <= len(exact) <= 45
    conflict, leak = set(truth.conflict_groups()), set(truth.leak_groups())
    assert len(conflict - leak) >= 8 and len(leak - conflict) >= 10 and len(conflict & leak) >= 3
    assert len(set(exact) - conflict - leak) >= 12
    for group in exact:
        rows = sorted(group)
        n_labels = len(set(ds.labels[rows].tolist()))
        n_splits = len(set(ds.splits[rows].tolist()))
        assert (n_labels > 1) == (group in conflict)
        assert (n_splits > 1) == (group in leak)
    pairs = {frozenset(ds.split_names[sorted(g)].tolist()) for g in leak}
    for a, b in [
        ("Training", "PublicTest"),
        ("Training", "PrivateTest"),
        ("PublicTest", "PrivateTest"),
    ]:
        assert frozenset({a, b}) in pairs


def test_near_groups_per_edit(any_demo):
    truth = any_demo.truth
    near = truth.near_groups()
    by_edit = {edit: truth.near_groups(edit) for edit in NEAR_EDITS}
    assert all(len(groups) >= 5 for groups in by_edit.values())
    assert sorted(map(sorted, near)) == sorted(sorted(g) for gs in by_edit.values() for g in gs)
    # About a third of the copies leak into another split, a third change the label.
    assert 0.2 <= len(truth.leak_groups("near")) / len(near) <= 0.45
    assert 0.2 <= len(truth.conflict_groups("near")) / len(near) <= 0.45
    exact_rows = set().union(*truth.exact_groups())
    assert exact_rows.isdisjoint(set().union(*near))
    with pytest.raises(ValueError):
        truth.near_groups("sepia")


def test_truth_json_round_trip(small):
    truth = small.truth
    again = type(truth).from_json(truth.to_json())
    assert again.groups.equals(truth.groups)
    assert again.non_faces.equals(truth.non_faces)


def test_kind_selection(any_demo):
    truth = any_demo.truth
    for select in (truth.conflict_groups, truth.leak_groups):
        every = select("all")
        assert sorted(map(sorted, every)) == sorted(map(sorted, select("exact") + select("near")))
        with pytest.raises(ValueError):
            select("fuzzy")


def test_near_copies_differ_and_are_unique(any_demo):
    pixels = any_demo.dataset.pixels
    flat = pixels.reshape(len(pixels), -1)
    _, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    counts = counts[inverse.reshape(-1)]
    for original, copy, edit in near_pairs(any_demo):
        assert not np.array_equal(pixels[original], pixels[copy]), edit
        assert counts[copy] == 1 and counts[original] == 1, edit


def test_near_copies_are_near_and_other_faces_are_not(any_demo):
    ds = any_demo.dataset
    base = base_rows(any_demo)
    for original, copy, edit in near_pairs(any_demo):
        probe = ds.pixels[copy][:, ::-1] if edit == "flip" else ds.pixels[copy]
        to_original = mad(probe, ds.pixels[original])
        others = base[(ds.labels[base] == ds.labels[original]) & (base != original)]
        to_others = mad(ds.pixels[others], probe)
        assert to_original < to_others.min(), (edit, to_original, to_others.min())


def test_edits_have_their_expected_effect(demo):
    ds = demo.dataset
    for original, copy, edit in near_pairs(demo):
        a = ds.pixels[original].astype(np.float64)
        b = ds.pixels[copy].astype(np.float64)
        if edit == "flip":
            assert np.array_equal(b, a[:, ::-1])
        elif edit == "brightness":
            assert 10 <= abs(b.mean() - a.mean()) <= 30
        elif edit == "contrast":
            ratio = b.std() / a.std()
            assert 0.7 <= ratio <= 1.35 and abs(ratio - 1) > 0.05
        elif edit == "blur":
            assert np.abs(np.diff(b, axis=1)).mean() < np.abs(np.diff(a, axis=1)).mean()
        elif edit in ("jpeg", "noise"):
            assert 0 < mad(a, b) < 10
        elif edit == "shift":
            # Some shift by at most 3 px reproduces the original away from the edges.
            inner = a[3:-3, 3:-3]
            assert any(
                np.array_equal(b[3 + dy : 45 + dy, 3 + dx : 45 + dx], inner)
                for dy in range(-3, 4)
                for dx in range(-3, 4)
                if dy or dx
            )


def test_base_faces_are_not_near_each_other(small):
    ds = small.dataset
    base = base_rows(small)
    faces = ds.pixels[base].reshape(len(base), -1).astype(np.int16)
    nearest = np.full(len(base), np.inf)
    for start in range(0, len(base), 64):
        d = np.abs(faces[start : start + 64, None, :] - faces[None, :, :]).mean(axis=-1)
        d[np.arange(len(d)), np.arange(start, start + len(d))] = np.inf
        nearest[start : start + 64] = d.min(axis=1)
    # Mild edits (JPEG, noise, blur) move a face by ~5 grey levels; distinct faces are
    # several times further apart.
    mild = [
        mad(ds.pixels[o], ds.pixels[c])
        for o, c, e in near_pairs(small)
        if e in ("jpeg", "noise", "blur")
    ]
    assert nearest.min() > 2 * max(mild)


# ---------------------------------------------------------------------- non-faces
def test_non_faces(any_demo):
    ds, table = any_demo.dataset, any_demo.truth.non_faces
    assert list(table.columns) == ["row", "kind"]
    assert table.row.is_unique and table.row.is_monotonic_increasing
    assert set(table.kind) == set(NON_FACE_KINDS)
    assert table.kind.value_counts().min() >= 6
    assert len(set(ds.splits[table.row].tolist())) == 3
    # No non-face is identical to another image (non-face or face).
    _, inverse, counts = np.unique(
        ds.pixels.reshape(len(ds), -1), axis=0, return_inverse=True, return_counts=True
    )
    assert np.all(counts[inverse.reshape(-1)][table.row.to_numpy()] == 1)
    for kind in NON_FACE_KINDS:
        assert any_demo.truth.non_face_rows(kind) == frozenset(table.row[table.kind == kind])
    blank = ds.pixels[sorted(any_demo.truth.non_face_rows("blank"))].astype(np.float64)
    assert blank.std(axis=(1, 2)).max() <= 1.0
    assert len(set(np.round(blank.mean(axis=(1, 2))).tolist())) == len(blank)
    noise = ds.pixels[sorted(any_demo.truth.non_face_rows("noise"))].astype(np.float64)
    assert noise.std(axis=(1, 2)).min() > 40


def test_eigenfaces_separate_faces_from_textured_non_faces(small):
    # What a PCA outlier auditor relies on: eigenfaces of the faces reconstruct faces
    # well and text, charts, noise and drawings badly. (Blank frames and gradients are
    # smooth, so PCA reconstructs them too; auditors flag them by their flatness.)
    ds = small.dataset
    faces = ds.pixels[base_rows(small)].reshape(-1, 48 * 48).astype(np.float64)
    mean = faces.mean(axis=0)
    # Top 20 eigenfaces via the small Gram matrix (faces x faces): much cheaper than
    # an SVD of the faces x pixels matrix.
    centred_faces = faces - mean
    vectors = np.linalg.eigh(centred_faces @ centred_faces.T)[1][:, -20:]
    basis = vectors.T @ centred_faces
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)

    def error(x: np.ndarray) -> np.ndarray:
        centred = x.reshape(len(x), -1).astype(np.float64) - mean
        return ((centred - centred @ basis.T @ basis) ** 2).mean(axis=1)

    textured = sorted(
        r for k in ("text", "chart", "noise", "drawing") for r in small.truth.non_face_rows(k)
    )
    assert error(ds.pixels[textured]).min() > 1.2 * error(faces).max()


def test_expressions_differ(demo):
    # Class-mean faces differ in the eye/brow/mouth region: the labels carry the
    # drawn expression, not just noise.
    ds = demo.dataset
    base = base_rows(demo)
    means = np.stack(
        [ds.pixels[base[ds.labels[base] == k]][:, 14:44, 8:40].mean(axis=0) for k in range(7)]
    )
    distance = np.abs(means[:, None] - means[None]).mean(axis=(2, 3))
    assert distance[~np.eye(7, dtype=bool)].min() > 1.5
