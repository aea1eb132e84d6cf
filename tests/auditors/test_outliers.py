"""OutlierAuditor: the face model against the demo's planted non-faces, the classic
mean-pixel rule against an independent computation, and the auditor contract."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from ferclean.auditors.context import AuditContext
from ferclean.auditors.outliers import FEATURES, METHODS, OutlierAuditor, face_features
from ferclean.dataset import FaceDataset
from ferclean.demo import NON_FACE_KINDS, make_demo
from ferclean.findings import COLUMNS


@pytest.fixture(scope="module")
def demo():
    return make_demo()  # 1500 faces + planted problems, 8 non-faces of each kind


@lru_cache(maxsize=1)
def _small_demo():
    return make_demo(n_faces=300)


@pytest.fixture(scope="module")
def small_demo():
    return _small_demo()


@pytest.fixture(scope="module")
def face_model(demo):
    auditor = OutlierAuditor()
    return auditor, auditor.audit(demo.dataset)


def _tiny(pixels) -> FaceDataset:
    return FaceDataset(np.asarray(pixels, dtype=np.uint8))


def _means(ds: FaceDataset) -> np.ndarray:
    # Computed here, not through the auditor's context, to check the rule independently.
    return ds.pixels.astype(np.float64).mean(axis=(1, 2))


# ---------------------------------------------------------------------- face model
def test_face_model_finds_the_planted_non_faces(demo, face_model):
    _, found = face_model
    planted = demo.truth.non_face_rows()
    hit = set(found.row) & planted
    assert len(hit) / len(planted) >= 0.9  # recall
    assert len(hit) / len(found) >= 0.8  # precision
    for kind in NON_FACE_KINDS:
        rows = demo.truth.non_face_rows(kind)
        assert len(set(found.row) & rows) / len(rows) >= 0.75, kind


def test_face_model_beats_the_mean_pixel_rule(demo, face_model):
    _, found = face_model
    classic = OutlierAuditor(method="mean_iqr").audit(demo.dataset)
    planted = demo.truth.non_face_rows()
    assert len(set(classic.row) & planted) < 0.5 * len(planted) <= len(set(found.row) & planted)


def test_face_model_scores_and_ranking(demo, face_model):
    auditor, found = face_model
    n = len(demo.dataset)
    scores = auditor.scores_
    assert scores.shape == (n,) and np.all((scores >= 0) & (scores <= 1))
    assert list(found.columns) == list(COLUMNS)
    assert found.issue.eq("outlier").all() and found.group.eq(-1).all()
    # Exactly the images scoring above the cut, worst first, with their own scores.
    assert set(found.row) == set(np.flatnonzero(scores > auditor.threshold_))
    assert found.score.is_monotonic_decreasing
    np.testing.assert_allclose(found.score, scores[found.row])
    # Planted non-faces outrank the faces on average, by a wide margin.
    planted = np.zeros(n, bool)
    planted[sorted(demo.truth.non_face_rows())] = True
    assert np.median(scores[planted]) > 0.5 > 0.01 > np.median(scores[~planted])


def test_face_model_attributes_and_details(demo, face_model):
    auditor, found = face_model
    n = len(demo.dataset)
    assert list(auditor.features_.columns) == list(FEATURES) and len(auditor.features_) == n
    assert auditor.components_.shape == (20, 24, 24) and auditor.mean_face_.shape == (24, 24)
    assert len(auditor.reference_) == 1000 and auditor.model_.n_samples_fit_ == 1000
    assert auditor.z_.shape == (n,)
    assert found.detail.str.startswith("face_model: ").all()
    blank = found[found.row.isin(demo.truth.non_face_rows("blank"))]
    assert blank.detail.str.contains("near-flat image").all()
    summary = auditor.summary_extra()
    assert summary == {"method": "face_model", "threshold": 0.5}


def test_face_model_is_computed_once_per_context(small_demo):
    ds = small_demo.dataset
    context = AuditContext(ds)
    first = OutlierAuditor()
    first.audit(ds, context)
    assert first.features_.shape == (len(ds), len(FEATURES))
    again = OutlierAuditor()  # same parameters: the context hands out the first one's work
    again.audit(ds, context)
    assert again.features_ is first.features_


def test_face_model_is_deterministic_and_seeded(small_demo):
    ds = small_demo.dataset
    a, b = OutlierAuditor(), OutlierAuditor()
    pd.testing.assert_frame_equal(a.audit(ds), b.audit(ds))
    np.testing.assert_array_equal(a.scores_, b.scores_)
    # Another seed draws other references and eigenface samples, yet finds the same
    # planted non-faces.
    seeds = [OutlierAuditor(n_reference=200, random_state=s) for s in (0, 1)]
    found = [auditor.audit(ds) for auditor in seeds]
    assert not np.array_equal(seeds[0].reference_, seeds[1].reference_)
    planted = small_demo.truth.non_face_rows()
    assert planted <= set(found[0].row) and planted <= set(found[1].row)


@pytest.mark.parametrize("seed", [1, 2])
def test_face_model_does_not_depend_on_input_order(demo, face_model, seed):
    # The demo in another order flagged 50 images instead of 51 (the random subsample
    # and references were positions in input order): now the same images, same scores.
    auditor, found = face_model
    perm = np.random.default_rng(seed).permutation(len(demo.dataset))
    permuted = OutlierAuditor()
    again = permuted.audit(demo.dataset.subset(perm))
    assert sorted(again.image_id) == sorted(found.image_id)
    by_id = found.set_index("image_id")
    np.testing.assert_array_equal(again.score.to_numpy(), by_id.loc[again.image_id, "score"])
    assert (again.detail.to_numpy() == by_id.loc[again.image_id, "detail"].to_numpy()).all()
    np.testing.assert_array_equal(permuted.scores_, auditor.scores_[perm])
    pd.testing.assert_frame_equal(permuted.features_, auditor.features_.iloc[perm]
                                  .reset_index(drop=True))
    feats, _, _ = face_features(demo.dataset.pixels[perm])
    pd.testing.assert_frame_equal(feats, auditor.features_.iloc[perm].reset_index(drop=True))


def test_threshold_and_contamination(small_demo):
    ds = small_demo.dataset
    base = OutlierAuditor()
    default = base.audit(ds)
    strict = OutlierAuditor(threshold=0.8).audit(ds)
    assert set(strict.row) < set(default.row)
    assert set(strict.row) == set(np.flatnonzero(base.scores_ > 0.8))
    share = OutlierAuditor(contamination=0.05)
    found = share.audit(ds)
    n_flag = int(np.ceil(0.05 * len(ds)))
    assert 0 < len(found) <= n_flag
    top = np.sort(share.scores_)[::-1][:n_flag]
    assert found.score.min() >= top.min()
    assert OutlierAuditor(threshold=1.0).audit(ds).empty


def test_face_features_are_vectorised_and_sensible(small_demo):
    ds = small_demo.dataset
    features, small, subspace = face_features(ds.pixels)
    truth = small_demo.truth
    noise, blank = sorted(truth.non_face_rows("noise")), sorted(truth.non_face_rows("blank"))
    median = features.median()
    assert (features["std"].iloc[blank] < 1.5).all()
    assert (features["fine"].iloc[noise] > 4 * median["fine"]).all()
    assert (features["residual"].iloc[noise] > 3 * median["residual"]).all()
    assert (features["ramp"].iloc[sorted(truth.non_face_rows("gradient"))] > 0.9).all()
    assert np.isfinite(features.to_numpy()).all()
    assert small.shape == (len(ds), 576) and small.dtype == np.float32


# ---------------------------------------------------------------------- mean_iqr
def test_mean_iqr_whisker_rule(small_demo):
    ds = small_demo.dataset
    means = _means(ds)
    for whisker in (1.5, 0.5):
        auditor = OutlierAuditor(method="mean_iqr", whisker=whisker)
        found = auditor.audit(ds)
        q1, q3 = np.percentile(means, [25, 75])
        low, high = q1 - whisker * (q3 - q1), q3 + whisker * (q3 - q1)
        expected = np.flatnonzero((means < low) | (means > high))
        assert sorted(found.row) == expected.tolist()
        assert auditor.lower_ == pytest.approx(low) and auditor.upper_ == pytest.approx(high)
        assert found.score.is_monotonic_decreasing
        assert ((found.score > 0) & (found.score <= 1)).all()
        assert np.all(auditor.scores_[np.setdiff1d(np.arange(len(ds)), expected)] == 0)
    assert len(OutlierAuditor(method="mean_iqr", whisker=0.5).audit(ds)) > len(
        OutlierAuditor(method="mean_iqr").audit(ds))


def test_mean_iqr_explicit_bounds(small_demo):
    ds = small_demo.dataset
    means = _means(ds)
    found = OutlierAuditor(method="mean_iqr", bounds=(90, 150), whisker=99).audit(ds)
    expected = np.flatnonzero((means < 90) | (means > 150))
    assert len(expected) > 0 and sorted(found.row) == expected.tolist()
    row = int(found.row.iloc[0])
    side = "< lower bound 90.0" if means[row] < 90 else "> upper bound 150.0"
    assert found.detail.iloc[0] == f"mean_iqr: mean pixel {means[row]:.1f} {side}"
    # The furthest beyond a bound ranks first.
    beyond = np.maximum(90 - means, 0) + np.maximum(means - 150, 0)
    assert row == int(np.argmax(beyond))


# ---------------------------------------------------------------------- contract
def test_clone_and_params_round_trip():
    auditor = OutlierAuditor(method="mean_iqr", whisker=2.0, bounds=(10, 200), threshold=0.7,
                             contamination=0.1, n_neighbors=5, random_state=3)
    twin = clone(auditor)
    assert twin.get_params() == auditor.get_params()
    assert twin is not auditor and repr(twin) == repr(auditor)
    assert OutlierAuditor().set_params(**auditor.get_params()).get_params() == \
        auditor.get_params()
    assert OutlierAuditor().method == METHODS[0] == "face_model"


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"method": "pca"}, ValueError, "method must be one of face_model, mean_iqr; got 'pca'"),
        ({"threshold": 1.5}, ValueError, r"threshold must be in \[0.0, 1.0\]; got 1.5"),
        ({"threshold": "high"}, TypeError, "threshold must be a number"),
        ({"contamination": 0}, ValueError, r"contamination must be None or in \(0, 0.5\]"),
        ({"contamination": 0.8}, ValueError, r"contamination must be in \[0.0, 0.5\]; got 0.8"),
        ({"n_neighbors": 0}, ValueError, "n_neighbors must be >= 1; got 0"),
        ({"n_neighbors": 2.5}, TypeError, "n_neighbors must be an integer >= 1; got 2.5"),
        ({"n_components": True}, TypeError, "n_components must be an integer"),
        ({"n_reference": 1}, ValueError, "n_reference must be >= 2; got 1"),
        ({"whisker": -1}, ValueError, "whisker must be > 0; got -1"),
        ({"bounds": (200, 10)}, ValueError, r"bounds must be \(low, high\) with low < high"),
        ({"bounds": "dark"}, TypeError, "bounds must be None or a pair of numbers"),
        ({"random_state": "seed"}, TypeError, "random_state must be None, an int"),
    ],
)
def test_bad_parameters_are_named(params, error, message):
    auditor = OutlierAuditor(**params)  # no validation in __init__ (scikit-learn style)
    assert auditor.get_params()[next(iter(params))] == next(iter(params.values()))
    with pytest.raises(error, match=message):
        auditor.audit(_tiny(np.zeros((3, 48, 48))))


EDGE_CASES = {
    "empty": lambda: _tiny(np.zeros((0, 48, 48))),
    "single": lambda: _tiny(np.full((1, 48, 48), 7)),
    "three": lambda: _tiny(np.random.default_rng(0).integers(0, 256, (3, 48, 48))),
    "all identical": lambda: _tiny(np.full((60, 48, 48), 9)),
    "fewer than components": lambda: _small_demo().dataset.subset(slice(0, 25)),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_do_not_crash(method, case):
    ds = EDGE_CASES[case]()
    auditor = OutlierAuditor(method=method, n_components=40)
    found = auditor.audit(ds)
    assert list(found.columns) == list(COLUMNS)
    assert auditor.scores_.shape == (len(ds),)
    assert np.all((auditor.scores_ >= 0) & (auditor.scores_ <= 1))
    if case in ("empty", "single", "three", "all identical"):
        assert found.empty  # nothing to compare with, or nothing differs
    pd.testing.assert_frame_equal(found, clone(auditor).audit(ds))


def test_a_blank_frame_among_identical_faces_is_found():
    # Data whose faces do not vary at all: any image that differs stands out.
    pixels = np.tile(_small_demo().dataset.pixels[:1], (40, 1, 1))
    pixels[7] = 128
    found = OutlierAuditor().audit(_tiny(pixels))
    assert found.row.tolist() == [7]
