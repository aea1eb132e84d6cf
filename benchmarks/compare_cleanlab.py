"""ferclean's confident learning next to cleanlab's, on the same out-of-fold probabilities.

cleanlab is AGPL-3, so it is never a dependency of ferclean: install it in a separate
environment and run this script with that environment's Python, from the repository root::

    python3 -m venv /tmp/cl-venv && /tmp/cl-venv/bin/pip install cleanlab
    /tmp/cl-venv/bin/python benchmarks/compare_cleanlab.py [/tmp/ferclean-label-bench]

It reads the probabilities ``benchmarks/bench_label_issues.py`` cached (one ``.npz`` per
flip set), runs ``cleanlab.filter.find_label_issues`` (its default, prune by noise rate)
and ``cleanlab.count.compute_confident_joint`` next to :mod:`ferclean.labels.confident`,
and writes ``benchmarks/results/cleanlab_agreement.json``: both flagged sets, their
overlap, both confident joints, and the parts of the difference each known rule accounts
for.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ferclean.labels.confident import (  # noqa: E402 (after the path is set)
    _likely_true,
    confident_joint,
    find_label_issues,
    per_class_thresholds,
)


def _select(labels: np.ndarray, probs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ferclean's issue selection (find_label_issues) from a given calibrated joint."""
    issues = np.zeros(len(labels), bool)
    for i in range(probs.shape[1]):
        members = np.flatnonzero(labels == i)
        budget = max(len(members) - 1, 0)
        for j in range(probs.shape[1]):
            take = min(int(np.round(counts[i, j])), budget) if j != i else 0
            if take > 0:
                margin = probs[members, j] - probs[members, i]
                issues[members[np.argsort(-margin, kind="stable")[:take]]] = True
    return issues & (probs.argmax(axis=1) != labels)


def compare(path: Path) -> dict:
    import cleanlab
    from cleanlab.count import compute_confident_joint
    from cleanlab.filter import find_label_issues as cl_find

    with np.load(path, allow_pickle=False) as data:
        probs, labels = data["pred_probs"], data["label"].astype(np.int64)
    ours = find_label_issues(labels, probs)
    theirs = cl_find(labels, probs)  # filter_by="prune_by_noise_rate"
    our_joint = confident_joint(labels, probs, calibrate=False)
    their_joint = compute_confident_joint(labels, probs, calibrate=False)
    # cleanlab's rule for an image confident in several classes: the overall argmax
    # (ferclean, as the paper: the argmax among the confident classes)
    thresholds = per_class_thresholds(labels, probs)
    confident = probs >= thresholds - 1e-6
    several = confident.sum(axis=1) > 1
    ours_guess = _likely_true(probs, thresholds)
    their_guess = np.where(several, probs.argmax(axis=1), confident.argmax(axis=1))
    their_guess = np.where(confident.any(axis=1), their_guess, -1)
    # attribute the difference: our selection fed with cleanlab's calibrated, integer
    # confident joint (its likely-true rule and its row-total-preserving rounding)
    their_counts = compute_confident_joint(labels, probs, calibrate=True)
    ours_with_their_joint = _select(labels, probs, np.asarray(their_counts, np.float64))
    # ... and with our likely-true rule but cleanlab's rounding of the calibrated rows
    from cleanlab.internal.util import round_preserving_row_totals
    ours_rounded = _select(labels, probs, np.asarray(round_preserving_row_totals(
        confident_joint(labels, probs)), np.float64))
    both = int((ours & theirs).sum())
    return {
        "cleanlab_version": cleanlab.__version__,
        "images": int(len(labels)),
        "ferclean_flagged": int(ours.sum()),
        "cleanlab_flagged": int(theirs.sum()),
        "both": both,
        "ferclean_only": int((ours & ~theirs).sum()),
        "cleanlab_only": int((~ours & theirs).sum()),
        "jaccard": round(both / max(int((ours | theirs).sum()), 1), 4),
        "agreement_per_image": round(float((ours == theirs).mean()), 5),
        "confident_joint_equal": bool(np.array_equal(our_joint, their_joint)),
        "confident_joint_max_abs_diff": int(np.abs(our_joint - their_joint).max()),
        "images_confident_in_several_classes": int(several.sum()),
        "likely_true_differs": int((ours_guess != their_guess).sum()),
        "differ_with_cleanlab_joint": int((ours_with_their_joint != theirs).sum()),
        "differ_with_cleanlab_rounding": int((ours_rounded != theirs).sum()),
        "ferclean_confident_joint": our_joint.tolist(),
        "cleanlab_confident_joint": their_joint.tolist(),
    }


def main() -> None:
    cache = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ferclean-label-bench")
    out = {}
    for name in ("uniform", "confused"):
        path = cache / f"{name}.npz"
        if path.exists():
            out[name] = compare(path)
            print(name, json.dumps({k: v for k, v in out[name].items()
                                    if not k.endswith("joint")}), flush=True)
    target = ROOT / "benchmarks" / "results" / "cleanlab_agreement.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
