"""The suite's statistics against hand-computed values: Holm, paired t, bootstrap, collapse."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ferclean.bench.predictions import write_predictions
from ferclean.bench.stats import (
    bootstrap_confusion,
    bootstrap_paired,
    collapse_reason,
    holm,
    macro_f1_from_confusion,
    paired_difference,
    run_collapse,
    summarize_runs,
)
from ferclean.demo import demo_dataset

ROOT = Path(__file__).resolve().parents[2]
FULL = ROOT / "benchmarks" / "results" / "full"


def test_holm_matches_hand_computed_values():
    # sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1: 0.04, 0.09, 0.08 -> 0.09 (monotone), 0.2
    adjusted = holm([0.01, 0.04, 0.03, np.nan, 0.2])
    np.testing.assert_allclose(adjusted, [0.04, 0.09, 0.09, np.nan, 0.2])
    np.testing.assert_allclose(holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1
    assert np.isnan(holm([np.nan])).all() and holm([]).size == 0


def test_paired_t_matches_the_closed_form_for_two_degrees_of_freedom():
    a = pd.DataFrame({"seed": [0, 1, 2], "accuracy": [0.60, 0.62, 0.61]})
    b = pd.DataFrame({"seed": [0, 1, 2], "accuracy": [0.63, 0.64, 0.65]})
    mean, std, p = paired_difference(b, a)
    # differences 0.03, 0.02, 0.04: mean 0.03, sd 0.01, t = 0.03 / (0.01 / sqrt 3)
    t = 0.03 / (0.01 / math.sqrt(3))
    # Student's t with 2 degrees of freedom: P(|T| > t) = 1 - t / sqrt(2 + t^2)
    assert mean == pytest.approx(0.03) and std == pytest.approx(0.01)
    assert p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)


def test_paired_bootstrap_is_exact_where_it_can_be():
    right = np.array([[1, 0, 1, 1, 0]], bool)
    assert bootstrap_paired(right, right) == (0.0, 0.0)  # no image differs
    better = np.ones((2, 5), bool)  # every image one better than a run that got none
    assert bootstrap_paired(better, np.zeros((2, 5), bool)) == (1.0, 1.0)
    # the same seed and name give the same interval; another name, other resamples
    rng = np.random.default_rng(1)
    x, y = rng.random((3, 400)) < 0.6, rng.random((3, 400)) < 0.55
    assert bootstrap_paired(x, y, name="a") == bootstrap_paired(x, y, name="a")
    assert bootstrap_paired(x, y, name="a") != bootstrap_paired(x, y, name="b")


def test_paired_bootstrap_agrees_with_the_normal_approximation():
    # 3,000 images, per image a difference of +1 (900), -1 (600) or 0 (1,500):
    # mean 0.1, sd sqrt(0.5 - 0.01); 95% interval about mean +- 1.96 sd / sqrt(n)
    n = 3000
    ours = np.r_[np.ones(900), np.zeros(600), np.ones(750), np.zeros(750)].astype(bool)
    base = np.r_[np.zeros(900), np.ones(600), np.ones(750), np.zeros(750)].astype(bool)
    low, high = bootstrap_paired(ours[None], base[None], n_resamples=4000)
    half = 1.96 * math.sqrt(0.5 - 0.01) / math.sqrt(n)
    assert (low + high) / 2 == pytest.approx(0.1, abs=0.003)
    assert (high - low) / 2 == pytest.approx(half, rel=0.08)


def _confusion(right: int, n: int) -> list[list[int]]:
    """A 2-class confusion matrix with ``right`` of ``n`` images right."""
    wrong = n - right
    return [[right // 2, wrong // 2], [wrong - wrong // 2, right - right // 2]]


def test_confusion_bootstrap_agrees_with_the_binomial_interval():
    # one run, 600 of 1,000 right: 0.6 +- 1.96 sqrt(0.6 * 0.4 / 1000)
    low, high = bootstrap_confusion([_confusion(600, 1000)], n_resamples=4000)
    half = 1.96 * math.sqrt(0.24 / 1000)
    assert (low + high) / 2 == pytest.approx(0.6, abs=0.002)
    assert (high - low) / 2 == pytest.approx(half, rel=0.08)
    # a difference of independent sides: variances add
    low, high = bootstrap_confusion([_confusion(600, 1000)], [_confusion(500, 1000)],
                                    n_resamples=4000)
    half = 1.96 * math.sqrt(0.24 / 1000 + 0.25 / 1000)
    assert (low + high) / 2 == pytest.approx(0.1, abs=0.003)
    assert (high - low) / 2 == pytest.approx(half, rel=0.08)
    # seeds lined up (perfectly correlated): two equal seeds are as wide as one
    one = bootstrap_confusion([_confusion(600, 1000)], n_resamples=4000)
    two = bootstrap_confusion([_confusion(600, 1000)] * 2, n_resamples=4000)
    assert two[1] - two[0] == pytest.approx(one[1] - one[0], rel=0.08)
    assert bootstrap_confusion([[[50, 0], [0, 50]]]) == (1.0, 1.0)


def test_confusion_interval_is_no_narrower_than_the_paired_one():
    # two models right on mostly the same images: pairing narrows the interval
    rng = np.random.default_rng(0)
    hard = rng.random(2000) < 0.4
    ours = ~hard | (rng.random(2000) < 0.1)
    base = ~hard & (rng.random(2000) < 0.97)
    paired = bootstrap_paired(ours[None], base[None])

    def conf(right):
        return _confusion(int(right.sum()), right.size)

    unpaired = bootstrap_confusion([conf(ours)], [conf(base)])
    assert unpaired[1] - unpaired[0] > 1.5 * (paired[1] - paired[0])


def test_collapse_reason_on_hand_made_confusions():
    assert collapse_reason([[0, 5], [0, 95]]) == "100% of predictions are one class (column 1)"
    assert collapse_reason([[1, 4], [0, 95]]) == "99% of predictions are one class (column 1)"
    assert collapse_reason([[40, 10], [10, 40]]) is None  # F1 0.8 each
    # random guessing with the class shares: F1 of each class = its share, mean 1 / K
    assert "at or below chance" in collapse_reason([[25, 25], [25, 25]])
    assert macro_f1_from_confusion([[3, 1], [0, 4]]) == pytest.approx((6 / 7 + 8 / 9) / 2)


def test_collapse_check_finds_the_stored_run_that_collapsed_and_only_it():
    runs = json.loads((FULL / "results.json").read_text())["runs"]
    flagged = {key: run_collapse(run) for key, run in runs.items() if run_collapse(run)}
    assert list(flagged) == ["honest|A|none|cnn_mha|0"]
    assert "100% of predictions are one class (column 3)" in flagged[
        "honest|A|none|cnn_mha|0"]  # column 3 is happy
    # the F1 from a confusion matrix is scikit-learn's macro-F1 the runs stored
    for run in runs.values():
        for metrics in run["metrics"].values():
            assert macro_f1_from_confusion(metrics["confusion"]) == pytest.approx(
                metrics["macro_f1"], abs=1e-9)


def _run(variation, seed, right, n=100, **extra):
    acc = right / n
    return {"protocol": "honest", "variation": variation, "sampling": "none",
            "model": "cnn_lstm", "seed": seed, **extra,
            "metrics": {"PrivateTest": {"accuracy": acc, "macro_f1": acc, "loss": 1.0, "n": n,
                                        "confusion": _confusion(right, n)}}}


def test_summary_excludes_collapsed_runs_and_adjusts_across_the_table():
    runs = {"A|0": _run("A", 0, 60), "A|1": _run("A", 1, 62), "A|2": _run("A", 2, 61),
            "B|0": _run("B", 0, 63), "B|1": _run("B", 1, 64), "B|2": _run("B", 2, 65),
            "C|0": _run("C", 0, 61), "C|1": _run("C", 1, 64), "C|2": _run("C", 2, 61)}
    runs["C|2"]["metrics"]["PrivateTest"]["confusion"] = [[0, 50], [0, 50]]  # collapsed
    summary = summarize_runs(runs).set_index("variation")
    assert summary.loc["C", "seeds"] == 2 and summary.loc["C", "n_collapsed"] == 1
    assert "seed 2" in summary.loc["C", "collapsed"]
    assert summary.loc["C", "accuracy_mean"] == pytest.approx(0.625)  # seeds 0, 1 only
    assert summary.loc["C", "n_pairs"] == 2
    assert summary.loc["C", "delta_vs_A"] == pytest.approx(0.015)  # (0.01 + 0.02) / 2
    p = summary.p_value.to_numpy()
    np.testing.assert_allclose(summary.p_holm.to_numpy(), holm(p))
    assert summary.loc["B", "p_holm"] == pytest.approx(min(1, 2 * summary.loc["B", "p_value"]))
    assert summary.loc["B", "ci_method"] == "confusion matrices"
    assert np.isnan(summary.loc["A", "p_holm"])


def test_summary_bootstrap_is_paired_when_predictions_are_stored(tmp_path):
    test = demo_dataset(n_faces=200).split("PrivateTest")
    rng = np.random.default_rng(0)
    runs = {}
    for variation in ("A", "B"):
        for seed in (0, 1):
            pred = np.where(rng.random(len(test)) < 0.6, test.labels, (test.labels + 1) % 7)
            proba = np.eye(7)[pred] * 0.9 + 0.1 / 7
            key = f"honest|{variation}|none|cnn_lstm|{seed}"
            path = write_predictions(tmp_path, key, {"PrivateTest": test},
                                     {"PrivateTest": proba})
            right = int((pred == test.labels).sum())
            runs[key] = _run(variation, seed, right, n=len(test),
                             predictions=path.relative_to(tmp_path).as_posix())
            confusion = np.zeros((7, 7), int)
            np.add.at(confusion, (test.labels, pred), 1)
            runs[key]["metrics"]["PrivateTest"].update(checksum="same",
                                                       confusion=confusion.tolist())
    row = summarize_runs(runs, tmp_path).set_index("variation").loc["B"]
    assert row.ci_method == row.delta_ci_method == "paired images" and row.same_images == 1
    right = {k: np.load(tmp_path / r["predictions"])["PrivateTest__pred"] == test.labels
             for k, r in runs.items()}
    expected = bootstrap_paired(
        np.stack([right["honest|B|none|cnn_lstm|0"], right["honest|B|none|cnn_lstm|1"]]),
        np.stack([right["honest|A|none|cnn_lstm|0"], right["honest|A|none|cnn_lstm|1"]]),
        name="honest|B|none|cnn_lstm|study|PrivateTest")
    assert (row.delta_ci_low, row.delta_ci_high) == pytest.approx(expected)
    # without the files (a merge elsewhere), the intervals come from confusion matrices
    assert summarize_runs(runs).set_index("variation").loc["B", "ci_method"] == (
        "confusion matrices")
