"""Confident learning, the copies' vote and probability alignment, on hand-computed cases
and on planted noise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferclean.dataset import FaceDataset
from ferclean.labels import (
    align_pred_probs,
    check_pred_probs,
    confident_joint,
    copies_vote,
    estimate_noise,
    find_label_issues,
    label_quality,
    per_class_thresholds,
)
from ferclean.similarity.exact import DuplicateGroups, merge_groups

# Six images, three classes, worked by hand:
# thresholds: t0 = (.8 + .7 + .2) / 3 = .5667, t1 = (.9 + .3) / 2 = .6, t2 = .8
# image 0 (label 0): p0 .8 >= t0 -> 0            image 3 (label 1): p1 .9 -> 1
# image 1 (label 0): p0 .7 >= t0 -> 0            image 4 (label 1): p0 .6 >= t0, p1 .3 -> 0
# image 2 (label 0): p2 .8 >= t2 -> 2            image 5 (label 2): p2 .8 -> 2
LABELS = np.array([0, 0, 0, 1, 1, 2])
PROBS = np.array([
    [0.8, 0.1, 0.1],
    [0.7, 0.2, 0.1],
    [0.2, 0.0, 0.8],
    [0.05, 0.9, 0.05],
    [0.6, 0.3, 0.1],
    [0.1, 0.1, 0.8],
])


def test_thresholds_and_confident_joint_by_hand():
    np.testing.assert_allclose(per_class_thresholds(LABELS, PROBS), [1.7 / 3, 0.6, 0.8])
    joint = confident_joint(LABELS, PROBS, calibrate=False)
    assert joint.tolist() == [[2, 0, 1], [1, 1, 0], [0, 0, 1]]
    # calibrated rows sum to the label counts (3, 2, 1); here every row was fully counted
    np.testing.assert_allclose(confident_joint(LABELS, PROBS), joint)


def test_calibration_rescales_rows_to_label_counts():
    labels = np.array([0, 0, 0, 0, 1, 1])
    probs = np.array([[.9, .1], [.9, .1], [.5, .5], [.5, .5], [.2, .8], [.9, .1]])
    # t0 = .7, t1 = .45: images 2 and 3 reach p1 .5 >= .45 -> counted as 1
    raw = confident_joint(labels, probs, calibrate=False)
    assert raw.tolist() == [[2, 2], [1, 1]]
    cal = confident_joint(labels, probs)
    np.testing.assert_allclose(cal.sum(axis=1), [4, 2])
    np.testing.assert_allclose(cal, [[2, 2], [1, 1]])


def test_noise_matrix_and_prior_by_hand():
    est = estimate_noise(LABELS, PROBS)
    np.testing.assert_allclose(est.joint, np.array([[2, 0, 1], [1, 1, 0], [0, 0, 1]]) / 6)
    np.testing.assert_allclose(est.prior, [3 / 6, 1 / 6, 2 / 6])
    # p(given=i | true=j): column 0 is 2/3 given 0, 1/3 given 1
    np.testing.assert_allclose(est.noise_matrix[:, 0], [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(est.noise_matrix.sum(axis=0), 1)
    assert est.errors_per_class().tolist() == [1, 1, 0]
    assert est.to_dict(["a", "b", "c"])["estimated_errors"] == 2.0


def test_issues_by_noise_rate_by_hand():
    # class 0 gives 1 to class 2 (largest margin p2 - p0: image 2); class 1 gives 1 to 0
    # (image 4: p0 - p1 = .3); both are predicted as another class, so both are issues
    assert np.flatnonzero(find_label_issues(LABELS, PROBS)).tolist() == [2, 4]


def test_prediction_equal_to_label_is_never_an_issue():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[.6, .4], [.55, .45], [.45, .55], [.4, .6]])
    assert not find_label_issues(labels, probs).any()


def test_label_quality_scores_by_hand():
    np.testing.assert_allclose(label_quality(LABELS, PROBS)[[0, 2, 4]], [0.8, 0.2, 0.3])
    margin = label_quality(LABELS, PROBS, method="normalized_margin")
    np.testing.assert_allclose(margin[[0, 2, 4]], [(0.8 - 0.1 + 1) / 2, (0.2 - 0.8 + 1) / 2,
                                                   (0.3 - 0.6 + 1) / 2])
    with pytest.raises(ValueError, match="method must be one of"):
        label_quality(LABELS, PROBS, method="entropy")


def _planted(seed: int, n: int = 3000, k: int = 7, flip: float = 0.1, accuracy: float = 0.7):
    """True labels, noisy labels with flips to a uniform other class, and probabilities
    of a model that puts ``accuracy`` on the true class on average (Dirichlet noise)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    flipped = rng.random(n) < flip
    given = np.where(flipped, (true + rng.integers(1, k, n)) % k, true)
    alpha = np.full((n, k), (1 - accuracy) / (k - 1) * 5)
    alpha[np.arange(n), true] = accuracy * 5
    probs = np.array([rng.dirichlet(a) for a in alpha])
    return true, given, flipped, probs


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_flips_are_found_with_bounded_precision_and_recall(seed):
    true, given, flipped, probs = _planted(seed)
    issues = find_label_issues(given, probs)
    precision = (issues & flipped).sum() / issues.sum()
    recall = (issues & flipped).sum() / flipped.sum()
    assert precision > 0.6 and recall > 0.5, (precision, recall)
    est = estimate_noise(given, probs)
    # the estimated error count is within a third of the planted one
    assert abs(est.errors_per_class().sum() - flipped.sum()) < flipped.sum() / 3
    quality = label_quality(given, probs)
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(flipped, -quality) > 0.85


@pytest.mark.parametrize("bad, message", [
    ([[0.5, 0.6]], "sums to 1.1"),
    ([[np.nan, 1.0]], "not finite"),
    ([[-0.1, 1.1]], "negative"),
    ([0.5, 0.5], "2-d array"),
    ([["a", "b"]], "not an array of numbers"),
])
def test_user_probabilities_are_validated(bad, message):
    with pytest.raises(ValueError, match=message):
        check_pred_probs(bad, source="probs.npy")


def test_alignment_by_rows_and_by_id(tmp_path):
    ds = FaceDataset(np.zeros((3, 48, 48), np.uint8), labels=[0, 1, 2], ids=["a", "b", "c"])
    probs = np.eye(7)[[0, 1, 2]]
    with pytest.raises(ValueError, match="2 rows of probabilities for 3 images"):
        align_pred_probs(ds, probs[:2])
    with pytest.raises(ValueError, match="6 classes per row, expected 7"):
        align_pred_probs(ds, np.full((3, 6), 1 / 6))
    np.savez(tmp_path / "p.npz", pred_probs=probs[[2, 0]], image_id=np.array(["c", "a"]))
    aligned = align_pred_probs(ds, tmp_path / "p.npz")
    assert aligned.index.tolist() == [2, 0]
    np.savez(tmp_path / "q.npz", pred_probs=probs[[0]], image_id=np.array(["zz"]))
    with pytest.raises(ValueError, match="q.npz: 1 image id.*'zz'"):
        align_pred_probs(ds, tmp_path / "q.npz")
    np.savez(tmp_path / "r.npz", probabilities=probs)
    with pytest.raises(ValueError, match="no 'pred_probs' array"):
        align_pred_probs(ds, tmp_path / "r.npz")
    (tmp_path / "s.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="s.npy: not a readable"):
        align_pred_probs(ds, tmp_path / "s.npy")


def test_copies_vote_majority_minority_and_ties():
    labels = np.array([3, 3, 4, 1, 2, 5, 5, -1, 0])
    group_of = np.array([0, 0, 0, 1, 1, 2, 2, 2, -1])
    vote = copies_vote(labels, group_of, n_classes=7)
    assert vote.majority.tolist() == [3, -1, 5]
    assert np.flatnonzero(vote.minority).tolist() == [2]
    assert vote.suggested[2] == 3 and (vote.suggested[[0, 1, 3, 4, 8]] == -1).all()
    assert vote.distribution(0) == {3: 2, 4: 1}
    assert vote.summary() == {"groups": 3, "conflicting_groups": 2, "majority_groups": 1,
                              "tied_groups": 1, "minority_images": 1}
    np.testing.assert_allclose(vote.support[[0, 2, 7, 8]], [2 / 3, 1 / 3, 1, 1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-1, 4), min_size=1, max_size=30),
       st.lists(st.integers(-1, 4), min_size=1, max_size=30))
def test_merged_groups_join_whatever_either_grouping_joins(a, b):
    n = min(len(a), len(b))
    from ferclean.similarity.exact import group_ids_from_labels

    def grouping(ids):
        ids = np.asarray(ids[:n])
        return DuplicateGroups(group_ids_from_labels(np.where(ids >= 0, ids, -np.arange(
            1, n + 1))), "x")

    ga, gb = grouping(a), grouping(b)
    merged = merge_groups(ga, gb).group_of
    for g in (ga, gb):
        for members in g.members():
            assert len(set(merged[members].tolist())) == 1 and merged[members[0]] >= 0
