"""The label_issue auditor's three signals and its summary, on data built for each."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ferclean
from ferclean.dataset import FaceDataset, label_code
from ferclean.io.ferplus import FERPLUS_COLUMNS, FERPLUS_VOTE_COLUMNS

SPLITS = ["Training"] * 6 + ["PublicTest", "PrivateTest"]
FERPLUS_NAME = {"angry": "anger", "disgust": "disgust", "fear": "fear", "happy": "happiness",
                "sad": "sadness", "surprise": "surprise", "neutral": "neutral"}


def _ferplus_csv(path, rows):
    """rows: (usage, {FER+ column: votes})."""
    lines = [",".join(FERPLUS_COLUMNS)]
    for i, (usage, votes) in enumerate(rows):
        lines.append(",".join([usage, f"fer{i:07d}.png",
                               *(str(votes.get(c, 0)) for c in FERPLUS_VOTE_COLUMNS)]))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def kaggle(tmp_path):
    """Eight images as an original-order Kaggle CSV, and FER+ votes aligned with it."""
    rng = np.random.default_rng(0)
    labels = [label_code(e) for e in
              ("happy", "happy", "sad", "angry", "neutral", "fear", "happy", "sad")]
    ds = FaceDataset(rng.integers(0, 256, (8, 48, 48), dtype=np.uint8), labels=labels,
                     splits=SPLITS)
    data = ferclean.load(ferclean.save(ds, tmp_path / "fer2013.csv"))
    votes = [
        ("Training", {"happiness": 10}),               # 0 agrees
        ("Training", {"surprise": 7, "happiness": 3}),  # 1 happy -> surprise (share .3)
        ("Training", {"sadness": 5, "neutral": 5}),     # 2 tie: no majority, not judged
        ("Training", {"NF": 10}),                       # 3 not a face
        ("Training", {"neutral": 9, "sadness": 1}),     # 4 agrees
        ("Training", {"sadness": 8, "fear": 2}),        # 5 fear -> sad (share .2)
        ("PublicTest", {"happiness": 10}),              # 6 agrees
        ("PrivateTest", {"anger": 6, "sadness": 4}),    # 7 sad -> angry (share .4)
    ]
    return data, _ferplus_csv(tmp_path / "fer2013new.csv", votes)


def test_ferplus_signal_and_agreement(kaggle):
    data, path = kaggle
    result = ferclean.audit(data, only=["label_issue"],
                            params={"label_issue": {"ferplus": path}})
    found = result.findings[result.findings.signal == "ferplus"]
    assert found.row.tolist() == [1, 5, 7]
    assert found.suggested_label.tolist() == [label_code("surprise"), label_code("sad"),
                                               label_code("angry")]
    np.testing.assert_allclose(found.score, [0.7, 0.8, 0.6])
    summary = result.summary["issues"]["label_issue"]["ferplus"]
    assert (summary["judged"], summary["disagree"], summary["not_face"]) == (6, 3, 1)
    assert summary["disagree_per_class"]["happy"] == 1
    # the outlier auditor ran as a dependency and its agreement with NF is reported
    assert set(summary["outlier"]) == {"flagged", "reference", "both", "precision", "recall"}
    assert summary["outlier"]["reference"] == 1
    assert "ferplus" in result.summary["settings"]["label_issue"]
    json.dumps(result.summary)  # plain data


def test_model_signal_agreement_with_ferplus(kaggle):
    data, path = kaggle
    # a "model" that doubts exactly images 1 and 4: one FER+ disputes, one it confirms
    probs = np.eye(7)[data.labels].astype(float) * 0.9 + 0.1 / 7
    probs[1] = np.eye(7)[label_code("surprise")] * 0.9 + 0.1 / 7
    probs[4] = np.eye(7)[label_code("angry")] * 0.9 + 0.1 / 7
    result = ferclean.audit(data, only=["label_issue"],
                            params={"label_issue": {"ferplus": path, "pred_probs": probs}})
    model = result.findings[result.findings.signal == "model"]
    assert set(model.row) <= {1, 4}
    agreement = result.summary["issues"]["label_issue"]["ferplus"]["model"]
    assert agreement["flagged"] == len(model) and agreement["reference"] == 3


def test_ferplus_of_another_order_is_refused(kaggle, tmp_path):
    data, _ = kaggle
    shifted = _ferplus_csv(tmp_path / "other.csv", [("PrivateTest", {"happiness": 10})] * 8)
    with pytest.raises(Exception, match="other.csv"):
        ferclean.audit(data, only=["label_issue"],
                       params={"label_issue": {"ferplus": shifted}})


def test_cli_audit_with_ferplus(kaggle, tmp_path, capsys):
    from ferclean.cli import main

    data, path = kaggle
    assert main([
        "audit", str(tmp_path / "fer2013.csv"), "--ferplus", str(path), "--only",
        "label_issue", "--out", str(tmp_path / "audit")]) == 0
    back = ferclean.read_findings(tmp_path / "audit")
    assert sorted(back.findings[back.findings.signal == "ferplus"].row) == [1, 5, 7]


def test_copies_vote_flags_the_minority_with_the_majority_as_suggestion():
    rng = np.random.default_rng(1)
    face = rng.integers(0, 256, (48, 48), dtype=np.uint8)
    other = rng.integers(0, 256, (2, 48, 48), dtype=np.uint8)
    pixels = np.stack([face, face, face, face, other[0], other[0], other[1]])
    labels = [3, 3, 3, 4, 1, 2, 0]  # group of 4: 3x happy, 1 sad; pair tied; single
    ds = FaceDataset(pixels, labels=labels)
    found = ferclean.audit(ds, only=["label_issue"])
    assert found.findings.row.tolist() == [3]
    assert found.findings.suggested_label.tolist() == [3]
    assert found.findings.score.tolist() == [0.75]
    assert found.findings.related_row.tolist() == [0]
    vote = found.summary["issues"]["label_issue"]["copies_vote"]
    assert (vote["conflicting_groups"], vote["tied_groups"], vote["minority_images"]) == (
        2, 1, 1)
    conflicts = ferclean.audit(ds, only=["label_conflict"]).findings
    assert sorted(set(conflicts.suggested_label)) == [-1, 3]  # the tie suggests nothing
