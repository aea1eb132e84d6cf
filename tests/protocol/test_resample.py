"""Resampling on Training only, provenance, class weights and the leakage guard."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.class_weight import compute_class_weight

import ferclean.protocol.leakage as leakage_module
import ferclean.protocol.resamplers._smote as smote_module
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.demo import make_demo
from ferclean.protocol import (
    RESAMPLERS,
    SMOTE,
    LeakageError,
    LeakageWarning,
    NoResampler,
    RandomOverSampler,
    Resampler,
    assert_no_leakage,
    check_leakage,
    class_weights,
    random_split,
    resample,
)
from ferclean.protocol.resamplers._strategy import (
    resolve_sampling_strategy as check_sampling_strategy,
)

SAMPLERS = [RandomOverSampler, SMOTE]


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_faces=300)


@pytest.fixture(scope="module")
def train(demo):
    return demo.dataset.split("Training")


@pytest.fixture(scope="module")
def test_splits(demo):
    return demo.dataset.split(["PublicTest", "PrivateTest"])


@pytest.fixture(scope="module")
def smote_fit(train):
    sampler = SMOTE(random_state=0)
    return sampler, sampler.fit_resample(train)


def counts(ds: FaceDataset) -> dict[int, int]:
    c = np.bincount(ds.labels, minlength=len(EMOTIONS))
    return {int(k): int(c[k]) for k in np.flatnonzero(c)}


def random_faces(n: int, seed: int, labels=None) -> FaceDataset:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    labels = np.arange(n) % 7 if labels is None else labels
    return FaceDataset(pixels, labels=labels, ids=[f"r{seed}-{i}" for i in range(n)])


# ---------------------------------------------------------------------- strategies
@pytest.mark.parametrize("cls", SAMPLERS)
def test_auto_grows_every_class_to_the_majority(cls, train):
    sampler = cls()
    out = sampler.fit_resample(train)
    before = counts(train)
    n_major = max(before.values())
    majority = min(c for c, m in before.items() if m == n_major)
    assert sampler.counts_before_ == before
    assert sampler.sampling_strategy_ == {
        c: n_major - m for c, m in before.items() if c != majority
    }
    assert counts(out) == dict.fromkeys(before, n_major) == sampler.counts_after_
    assert len(out) == len(train) + sum(sampler.sampling_strategy_.values())
    assert out.resampled and not train.resampled
    assert set(out.split_names) == {"Training"}


@pytest.mark.parametrize("cls", SAMPLERS)
def test_dict_strategy_sets_target_totals(cls, train):
    before = counts(train)
    wanted = {"disgust": before[1] + 13, 5: before[5] + 7}
    sampler = cls(sampling_strategy=wanted)
    out = sampler.fit_resample(train)
    assert sampler.sampling_strategy_ == {1: 13, 5: 7}
    expected = dict(before)
    expected[1] += 13
    expected[5] += 7
    assert counts(out) == expected


@pytest.mark.parametrize("cls", SAMPLERS)
def test_float_strategy_is_a_ratio_to_the_majority(cls, train):
    before = counts(train)
    target = int(np.floor(0.6 * max(before.values())))
    out = cls(sampling_strategy=0.6).fit_resample(train)
    assert counts(out) == {c: max(m, target) for c, m in before.items()}


def test_string_strategies():
    labels = np.array([0] * 5 + [3] * 3 + [6] * 1)
    assert check_sampling_strategy("not majority", labels) == {3: 2, 6: 4}
    assert check_sampling_strategy("minority", labels) == {6: 4}
    assert check_sampling_strategy("not minority", labels) == {0: 0, 3: 2}
    assert check_sampling_strategy("all", labels) == {0: 0, 3: 2, 6: 4}


@pytest.mark.parametrize(
    ("strategy", "error", "match"),
    [
        ("bogus", ValueError, "one of 'auto', 'not majority'"),
        (0.0, ValueError, r"must be in \(0, 1\]"),
        (1.5, ValueError, r"must be in \(0, 1\]"),
        ({"happy": 1}, ValueError, "below the .* 'happy' images present; over-sampling only adds"),
        ({"grumpy": 100}, ValueError, "unknown emotion 'grumpy'"),
        ({3: 100, "happy": 120}, ValueError, "names class 'happy' twice"),
        ({3: 100.5}, TypeError, "must be an int"),
        (["auto"], TypeError, "must be a str, a float in"),
        (True, TypeError, "must be a str, a float in"),
    ],
)
def test_bad_strategy_messages(train, strategy, error, match):
    with pytest.raises(error, match=match):
        RandomOverSampler(sampling_strategy=strategy).fit_resample(train)


def test_dict_strategy_for_an_absent_class_names_the_classes_present():
    ds = random_faces(6, 0, labels=[0, 0, 0, 3, 3, 3])
    with pytest.raises(ValueError, match="'disgust', which has no images.*angry, happy"):
        RandomOverSampler(sampling_strategy={"disgust": 4}).fit_resample(ds)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_emotion_name_strategy_goes_through_imblearn(cls, train):
    # {"disgust": 500} is a target total: imbalanced-learn's checker turns it into the
    # number of images to add, exactly as for the label id
    n_disgust = counts(train)[1]
    by_name = cls(sampling_strategy={"disgust": 500}).fit_resample(train)
    by_id = cls(sampling_strategy={1: 500}).fit_resample(train)
    assert counts(by_name)[1] == counts(by_id)[1] == 500
    assert by_name.equals(by_id, ids=True)
    from imblearn.utils import check_sampling_strategy as imblearn_check

    y = train.labels.astype(np.int64)
    assert check_sampling_strategy({"disgust": 500}, y) == dict(
        imblearn_check({1: 500}, y, "over-sampling")
    ) == {1: 500 - n_disgust}


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        ({"disgust": 500, "grumpy": 10}, "unknown emotion 'grumpy'; expected one of angry, "),
        ({"disgust": 1}, r"sampling_strategy\['disgust'\] = 1 is below the \d+ 'disgust' "
                         "images present; over-sampling only adds images"),
    ],
)
def test_bad_emotion_name_strategy_is_a_clear_error(train, strategy, match):
    for cls in SAMPLERS:
        with pytest.raises(ValueError, match=match):
            cls(sampling_strategy=strategy).fit_resample(train)


# ---------------------------------------------------------------------- provenance
def test_ros_copies_trace_to_their_sources(train):
    ros = RandomOverSampler(random_state=3)
    out = ros.fit_resample(train)
    idx = ros.sample_indices_
    n = len(train)
    assert idx.dtype == np.int64 and len(idx) == len(out)
    np.testing.assert_array_equal(idx[:n], np.arange(n))
    assert out.subset(slice(0, n)).equals(train, ids=True)
    np.testing.assert_array_equal(out.pixels, train.pixels[idx])
    np.testing.assert_array_equal(out.labels, train.labels[idx])
    np.testing.assert_array_equal(out.rows, train.rows[idx])
    assert not out.synthetic.any()
    # added copies come grouped by class, in label order
    assert np.all(np.diff(out.labels[n:]) >= 0)
    # ids: "<source id>#copy<k>", k counting the copies of each source from 1
    added = idx[n:]
    assert len(set(out.ids.tolist())) == len(out)
    for pos in np.flatnonzero(np.bincount(added) > 1)[:5]:
        ids = sorted(out.ids[n:][added == pos].tolist())
        k = len(ids)
        assert ids == sorted(f"{train.ids[pos]}#copy{j}" for j in range(1, k + 1))


def test_smote_marks_synthetic_images_and_keeps_originals(train, smote_fit):
    sampler, out = smote_fit
    n = len(train)
    assert out.subset(slice(0, n)).equals(train, ids=True)
    np.testing.assert_array_equal(out.rows[:n], train.rows)
    np.testing.assert_array_equal(out.synthetic, np.arange(len(out)) >= n)
    m = len(out) - n
    assert out.ids[n:].tolist() == [f"smote-{k}" for k in range(m)]
    assert (out.rows[n:] == -1).all()
    assert set(out.split_names) == {"Training"}
    assert out.pixels.dtype == np.uint8


def test_smote_images_lie_between_their_base_and_neighbour(train, smote_fit):
    sampler, out = smote_fit
    n = len(train)
    base, nbr = sampler.sample_indices_[n:], sampler.neighbor_indices_[n:]
    np.testing.assert_array_equal(sampler.sample_indices_[:n], np.arange(n))
    assert (sampler.neighbor_indices_[:n] == -1).all() and (nbr >= 0).all()
    np.testing.assert_array_equal(train.labels[base], out.labels[n:])
    np.testing.assert_array_equal(train.labels[nbr], out.labels[n:])
    new = out.pixels[n:]
    lo = np.minimum(train.pixels[base], train.pixels[nbr])
    hi = np.maximum(train.pixels[base], train.pixels[nbr])
    assert np.all((new >= lo) & (new <= hi))
    # hence also inside the per-pixel range of the class ("convex hull-ish")
    for label in np.unique(out.labels[n:]):
        cls = train.pixels[train.labels == label]
        part = new[out.labels[n:] == label]
        assert np.all((part >= cls.min(axis=0)) & (part <= cls.max(axis=0)))


def test_smote_provenance_fallback_names_a_same_class_image(train, smote_fit):
    sampler, out = smote_fit
    n = len(train)
    x = train.pixels.reshape(n, -1).astype(np.float32)
    new_x = out.pixels[n:].reshape(len(out) - n, -1).astype(np.float32)
    base, nbr = smote_module._smote_provenance(
        [], train.labels.astype(np.int64), new_x, out.labels[n:].astype(np.int64), x
    )
    np.testing.assert_array_equal(train.labels[base], out.labels[n:])
    assert (nbr == -1).all()
    # the nearest image is almost always one of the two interpolated between
    hit = (base == sampler.sample_indices_[n:]) | (base == sampler.neighbor_indices_[n:])
    assert hit.mean() > 0.8


def test_smote_needs_more_images_than_neighbours():
    ds = random_faces(14, 1, labels=[0] * 10 + [1] * 4)
    with pytest.raises(ValueError, match=r"k_neighbors=5 needs more than 5.*disgust \(4\)"):
        SMOTE().fit_resample(ds)
    out = SMOTE(k_neighbors=3).fit_resample(ds)
    assert counts(out) == {0: 10, 1: 10}
    with pytest.raises(ValueError, match="k_neighbors must be an int >= 1"):
        SMOTE(k_neighbors=0).fit_resample(ds)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_nothing_to_add_still_marks_resampled(cls):
    ds = random_faces(12, 2, labels=[0] * 6 + [3] * 6)
    sampler = cls()
    out = sampler.fit_resample(ds)
    assert out.equals(ds, ids=True) and out.resampled
    np.testing.assert_array_equal(sampler.sample_indices_, np.arange(12))


def test_no_resampler_returns_the_data_unchanged(train):
    sampler = NoResampler()
    out = sampler.fit_resample(train)
    assert out.equals(train, ids=True) and not out.resampled
    assert sampler.sampling_strategy_ == {}
    assert sampler.counts_after_ == sampler.counts_before_ == counts(train)


# ---------------------------------------------------------------------- estimator API
@pytest.mark.parametrize("cls", SAMPLERS)
def test_same_random_state_same_output(cls, train):
    a = cls(random_state=7).fit_resample(train)
    b = cls(random_state=7).fit_resample(train)
    c = cls(random_state=8).fit_resample(train)
    assert a.equals(b, ids=True) and a.checksum() == b.checksum()
    assert not np.array_equal(a.pixels, c.pixels)
    g1 = cls(random_state=np.random.default_rng(5)).fit_resample(train)
    g2 = cls(random_state=np.random.default_rng(5)).fit_resample(train)
    assert g1.equals(g2, ids=True)


@pytest.mark.parametrize("cls", [*SAMPLERS, NoResampler])
def test_clone_and_params(cls, train):
    sampler = cls()
    assert isinstance(sampler, Resampler)
    params = sampler.get_params()
    if cls is not NoResampler:
        sampler.set_params(sampling_strategy={"disgust": 30}, random_state=4)
        assert sampler.get_params()["sampling_strategy"] == {"disgust": 30}
        assert "random_state=4" in repr(sampler)
    sampler.fit_resample(train)
    copy = clone(sampler)
    assert copy.get_params() == sampler.get_params()
    assert not hasattr(copy, "sampling_strategy_") and hasattr(sampler, "sample_indices_")
    assert set(cls().get_params()) == set(params)


def test_params_are_validated_at_fit_not_init(train):
    bad = RandomOverSampler(sampling_strategy="bogus", random_state="x")
    assert bad.get_params()["random_state"] == "x"
    with pytest.raises(TypeError, match="random_state must be"):
        bad.fit_resample(train)


def test_resample_helper_and_registry(train):
    assert RESAMPLERS == {"none": NoResampler, "ros": RandomOverSampler, "smote": SMOTE}
    out = resample(train, "ros", sampling_strategy={"disgust": 40}, random_state=1)
    assert out.equals(
        RandomOverSampler(sampling_strategy={"disgust": 40}, random_state=1).fit_resample(train)
    )
    assert resample(train, "none").equals(train)
    with pytest.raises(
        ValueError, match="unknown resampling method 'adasyn'; expected one of none, ros, smote"
    ):
        resample(train, "adasyn")


# ---------------------------------------------------------------------- validation
@pytest.mark.parametrize("method", sorted(RESAMPLERS))
def test_resampling_test_images_raises(demo, method):
    ds = demo.dataset
    n_pub, n_priv = ds.split_counts()["PublicTest"], ds.split_counts()["PrivateTest"]
    with pytest.raises(LeakageError) as info:
        resample(ds, method)
    message = str(info.value)
    assert f"{n_pub} PublicTest and {n_priv} PrivateTest" in message
    assert "ds.split('Training')" in message and "untouched test splits" in message
    assert isinstance(info.value, ValueError)
    # one test image is enough
    one_test = FaceDataset.concat([ds.split("Training"), ds.split("PrivateTest")[:1]])
    with pytest.raises(LeakageError, match=r"\(1 PrivateTest image\(s\) present\)"):
        RandomOverSampler().fit_resample(one_test)


def test_other_input_errors():
    with pytest.raises(TypeError, match="must be a ferclean.FaceDataset"):
        RandomOverSampler().fit_resample(np.zeros((3, 48, 48), np.uint8))
    unlabeled = FaceDataset(np.zeros((4, 48, 48), np.uint8), labels=[0, 1, -1, 1])
    with pytest.raises(ValueError, match="1 of 4 have label -1"):
        RandomOverSampler().fit_resample(unlabeled)
    with pytest.raises(ValueError, match="1 class"):
        SMOTE().fit_resample(random_faces(5, 0, labels=[2] * 5))
    with pytest.raises(ValueError, match="0 class"):
        class_weights(random_faces(0, 0, labels=np.zeros(0, int)))


def test_class_weights_match_sklearn(train, demo):
    weights = class_weights(train)
    classes = np.unique(train.labels)
    expected = compute_class_weight("balanced", classes=classes, y=train.labels)
    assert list(weights) == classes.tolist()
    np.testing.assert_allclose(list(weights.values()), expected)
    assert class_weights(train, strategy=None) == dict.fromkeys(classes.tolist(), 1.0)
    with pytest.raises(ValueError, match="'balanced' or None"):
        class_weights(train, strategy="sqrt")
    with pytest.raises(LeakageError, match="cannot compute class weights for a dataset that holds"):
        class_weights(demo.dataset)


# ---------------------------------------------------------------------- splitting
def test_random_split_refuses_resampled_data(train, test_splits, smote_fit):
    ros = resample(train, "ros")
    with pytest.raises(LeakageError, match="splitting after resampling puts copies of the same"):
        random_split(ros)
    with pytest.raises(LeakageError, match="cannot split a resampled dataset"):
        random_split(smote_fit[1])
    # the study's sequence: pool, oversample, split; resampled-ness survives concat/subset
    with pytest.raises(LeakageError):
        random_split(FaceDataset.concat([ros, test_splits]))
    with pytest.raises(LeakageError):
        random_split(ros.subset(np.arange(0, len(ros), 2)))
    # synthetic images alone are enough to refuse
    flagged = FaceDataset(train.pixels, train.labels, synthetic=np.arange(len(train)) == 0)
    with pytest.raises(LeakageError):
        random_split(flagged)
    with pytest.warns(LeakageWarning, match="splitting after resampling"):
        tr, te = random_split(ros, allow_resampled=True)
    assert len(tr) + len(te) == len(ros)


def test_random_split_parts(train):
    tr, te = random_split(train, 0.25, random_state=1)
    assert len(te) == int(np.ceil(0.25 * len(train))) and len(tr) + len(te) == len(train)
    assert set(tr.split_names) == {"Training"} and set(te.split_names) == {"PublicTest"}
    assert set(tr.ids) | set(te.ids) == set(train.ids) and not set(tr.ids) & set(te.ids)
    assert np.all(np.diff(tr.rows) > 0) and np.all(np.diff(te.rows) > 0)  # order kept
    again = random_split(train, 0.25, random_state=1)
    assert again[1].equals(te, ids=True)
    assert not random_split(train, 0.25, random_state=2)[1].equals(te, ids=True)
    _, te = random_split(train, 30, test_split="PrivateTest")
    assert len(te) == 30 and set(te.split_names) == {"PrivateTest"}
    # stratified: every class keeps its share (up to rounding)
    _, te = random_split(train, 0.2, stratify=True, random_state=0)
    share = np.bincount(te.labels, minlength=7) / np.maximum(
        np.bincount(train.labels, minlength=7), 1
    )
    assert np.all(np.abs(share[np.bincount(train.labels, minlength=7) > 0] - 0.2) < 0.1)
    for bad in (0.0, 1.0, 0, len(train), "x"):
        with pytest.raises(ValueError, match="test_size"):
            random_split(train, bad)


# ---------------------------------------------------------------------- leakage checks
def planted_pairs(demo) -> set[tuple[int, int]]:
    """(test row, training row) pairs of the demo's planted exact cross-split groups."""
    pairs = set()
    exact = demo.truth.groups[demo.truth.groups.kind == "exact"]
    for rows, splits in zip(exact.rows, exact.splits, strict=True):
        train_rows = [r for r, s in zip(rows, splits, strict=True) if s == "Training"]
        test_rows = [r for r, s in zip(rows, splits, strict=True) if s != "Training"]
        pairs |= {(t, r) for t in test_rows for r in train_rows}
    return pairs


def found_pairs(leaks: pd.DataFrame, train: FaceDataset, test: FaceDataset, source=None):
    """(test row, training source row) pairs; ``source`` maps resampled to input positions."""
    pos = leaks.train_position.to_numpy()
    if source is not None:
        pos = source[pos]
    return set(zip(test.rows[leaks.test_position].tolist(), train.rows[pos].tolist(), strict=True))


def test_check_leakage_finds_exactly_the_planted_cross_split_copies(demo, train, test_splits):
    expected = planted_pairs(demo)
    assert expected  # the demo plants Training-test groups
    leaks = check_leakage(train, test_splits)
    assert list(leaks.columns) == [
        "test_position",
        "test_id",
        "test_split",
        "train_position",
        "train_id",
        "kind",
        "similarity",
    ]
    assert found_pairs(leaks, train, test_splits) == expected
    assert (leaks.kind == "exact").all() and (leaks.similarity == 1.0).all()
    np.testing.assert_array_equal(leaks.test_id, test_splits.ids[leaks.test_position])
    np.testing.assert_array_equal(leaks.train_id, train.ids[leaks.train_position])
    np.testing.assert_array_equal(leaks.test_split, test_splits.split_names[leaks.test_position])
    assert leaks.equals(leaks.sort_values(["test_position", "train_position"]))


@pytest.mark.parametrize("method", ["ros", "smote"])
def test_honest_pipeline_finds_only_pre_existing_leaks(demo, train, test_splits, method):
    sampler = RESAMPLERS[method](random_state=0)
    resampled = sampler.fit_resample(train)  # Training only: no error
    leaks = check_leakage(resampled, test_splits)
    before = check_leakage(train, test_splits)
    # the same test images leak as before resampling, and every training match traces
    # (through sample_indices_) to an original image of its planted group: resampling
    # creates no leak of its own
    assert set(leaks.test_position) == set(before.test_position)
    assert found_pairs(leaks, train, test_splits, sampler.sample_indices_) == planted_pairs(demo)
    originals = leaks[leaks.train_position < len(train)]
    assert found_pairs(originals, resampled, test_splits) == planted_pairs(demo)


def test_check_leakage_finds_a_planted_copy_and_nothing_in_disjoint_data():
    train, test = random_faces(40, 1), random_faces(10, 2)
    empty = check_leakage(train, test)
    assert empty.empty and list(empty.columns)[0] == "test_position"
    assert empty.dtypes["test_position"] == np.int64
    assert empty.dtypes["similarity"] == np.float64
    pixels = test.pixels.copy()
    pixels[3] = train.pixels[7]
    planted = FaceDataset(pixels, test.labels, splits=["PrivateTest"] * 10, ids=test.ids)
    leaks = check_leakage(train, planted)
    assert leaks[["test_position", "test_id", "test_split", "train_position", "train_id"]].to_dict(
        "records"
    ) == [
        {
            "test_position": 3,
            "test_id": "r2-3",
            "test_split": "PrivateTest",
            "train_position": 7,
            "train_id": "r1-7",
        }
    ]
    with pytest.raises(
        LeakageError, match=r"1 of 10 test image\(s\).*test r2-3 \(PrivateTest\) = train r1-7"
    ):
        assert_no_leakage(train, planted)
    assert_no_leakage(train, test)


def test_check_leakage_verifies_hash_matches(monkeypatch):
    # Every image hashing alike must not make different images count as copies.
    train, test = random_faces(20, 3), random_faces(6, 4)
    pixels = test.pixels.copy()
    pixels[[1, 4]] = train.pixels[[5, 5]]
    test = FaceDataset(pixels, test.labels)
    monkeypatch.setattr(leakage_module, "content_hash", lambda px: np.zeros(len(px), np.uint64))
    leaks = check_leakage(train, test)
    assert leaks[["test_position", "train_position"]].values.tolist() == [[1, 5], [4, 5]]


def test_near_leakage_finds_the_planted_near_copies():
    demo = make_demo(n_faces=300)
    ds = demo.dataset
    train_mask = ds.split_mask("Training")
    train, test = ds.subset(train_mask), ds.subset(~train_mask)
    leaks = check_leakage(train, test, near=True, mirror=True)
    exact_only = check_leakage(train, test)
    assert set(leaks.kind) <= {"exact", "near", "mirror"}
    pd.testing.assert_frame_equal(
        leaks[leaks.kind == "exact"].reset_index(drop=True), exact_only)
    found = {(int(train.rows[a]), int(test.rows[b]))
             for a, b in zip(leaks.train_position, leaks.test_position, strict=True)}
    for group in demo.truth.leak_groups("near"):
        rows = sorted(group)
        pairs = {(a, b) for a in rows for b in rows
                 if train_mask[a] and not train_mask[b]}
        if pairs:  # groups between the two test splits have no Training side
            assert pairs & found, f"near leak group {rows} not found"
    checked = [g for g in demo.truth.leak_groups("near")
               if any(train_mask[r] for r in g) and not all(train_mask[r] for r in g)]
    assert checked  # the demo plants Training/test near copies
    assert (leaks.similarity[leaks.kind != "exact"] >= 0.97).all()
    with pytest.raises(ValueError, match="needs near=True"):
        check_leakage(train, test, mirror=True)


def test_assert_no_leakage_counts_images(train, test_splits):
    leaks = check_leakage(train, test_splits)
    with pytest.raises(LeakageError) as info:
        assert_no_leakage(train, test_splits)
    assert str(info.value).startswith(
        f"{leaks.test_position.nunique()} of {len(test_splits)} test image(s)"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_no_leakage(train[:0], test_splits)
    assert SPLITS[0] == "Training"
