"""Wrong labels on the real FER-2013: planted flips found by out-of-fold confident learning.

Usage::

    python benchmarks/bench_label_issues.py [FER2013_ZIP] [--folds 5] [--cache DIR]

On the real FER-2013 Training split (28,709 images):

1. **uniform flips**: 5 % of the labels (seeded) flipped to a uniformly chosen other class;
   ``ferclean.learning.crossval`` with the CPU default (``patches``), timed, five folds
   with every group of copies inside one fold; then the ``label_issue`` auditor's
   label-quality score (AUROC of flipped vs untouched labels) and the flagged set at the
   defaults (precision and recall against the planted flips);
2. **confused flips**: 5 % of each class flipped to the class the first run's out-of-fold
   model confuses it with most (harder: the flip looks plausible), same measures;
3. a seeded sample of 40 of the 400 top-ranked flags on *untouched* labels of run 1, drawn
   as a contact sheet (``--sheet PNG``, not committed: it shows dataset images) for review
   by eye; the verdicts are recorded by hand in ``label_issues.json`` under ``review``.

The probabilities are cached in ``--cache`` (default ``/tmp/ferclean-label-bench``) so that
``benchmarks/compare_cleanlab.py`` can run cleanlab on exactly the same ones.
Writes ``benchmarks/results/label_issues.json`` (keeping an existing ``review`` entry).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

import ferclean
from ferclean._json import write_json
from ferclean.dataset import EMOTIONS, FaceDataset
from ferclean.labels import find_label_issues, label_quality
from ferclean.learning.crossval import crossval, read_crossval

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "label_issues.json"
RATE = 0.05
SEED = 2024


def flip_uniform(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    flipped = np.zeros(len(labels), bool)
    flipped[rng.choice(len(labels), int(round(RATE * len(labels))), replace=False)] = True
    new = labels.copy()
    new[flipped] = (labels[flipped] + rng.integers(1, len(EMOTIONS), flipped.sum())) % len(
        EMOTIONS)
    return new


def flip_confused(labels: np.ndarray, confused: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    new = labels.copy()
    for k in range(len(EMOTIONS)):
        members = np.flatnonzero(labels == k)
        take = rng.choice(members, int(round(RATE * len(members))), replace=False)
        new[take] = confused[k]
    return new


def measure(name: str, ds: FaceDataset, noisy: np.ndarray, folds: int, cache: Path,
            seed: int) -> dict:
    """Crossval on the noisy labels (cached), then the auditor's scores and flags."""
    flipped = noisy != ds.labels
    noisy_ds = FaceDataset(ds.pixels, labels=noisy, splits=ds.splits, ids=ds.ids,
                           rows=ds.rows, source=f"FER-2013 Training, {name} flips")
    path = cache / f"{name}.npz"
    if path.exists():
        result = read_crossval(path)
    else:
        result = crossval(noisy_ds, folds=folds, seed=seed, progress=True)
        result.save(path)
    found = ferclean.audit(noisy_ds, only=["label_issue"],
                           params={"label_issue": {"pred_probs": result}})
    model = found.findings[found.findings.signal == "model"]
    flagged = np.isin(ds.rows, model.row.to_numpy())
    quality = label_quality(noisy, result.pred_probs)
    margin = label_quality(noisy, result.pred_probs, method="normalized_margin")
    assert np.array_equal(find_label_issues(noisy, result.pred_probs), flagged)
    hits = int((flagged & flipped).sum())
    return {
        "images": int(len(ds)),
        "flipped": int(flipped.sum()),
        "crossval_seconds": result.info["seconds"],
        "copy_groups_in_one_fold": result.info["copy_groups"],
        "copy_groups_split": result.info["copy_groups_split_across_folds"],
        "oof_accuracy_vs_given": round(float((result.pred_probs.argmax(1) == noisy).mean()), 4),
        "oof_accuracy_vs_original": round(
            float((result.pred_probs.argmax(1) == ds.labels).mean()), 4),
        "auroc_self_confidence": round(float(roc_auc_score(flipped, -quality)), 4),
        "auroc_normalized_margin": round(float(roc_auc_score(flipped, -margin)), 4),
        "flagged": int(flagged.sum()),
        "flagged_planted": hits,
        "precision": round(hits / max(int(flagged.sum()), 1), 4),
        "recall": round(hits / max(int(flipped.sum()), 1), 4),
        "estimated_errors": found.summary["issues"]["label_issue"]["noise"][
            "estimated_errors"],
        "suggestion_is_original": round(float(
            (model.suggested_label.to_numpy()[flipped[np.searchsorted(ds.rows, model.row)]]
             == ds.labels[np.searchsorted(ds.rows, model.row)][
                 flipped[np.searchsorted(ds.rows, model.row)]]).mean()), 4) if hits else None,
    }, result, model, flipped


def contact_sheet(ds: FaceDataset, picks: np.ndarray, model, out: Path) -> list[dict]:
    """40 flagged images, 8 per row, each with its given and suggested label."""
    from ferclean._figures import new_figure, save_figure

    fig = new_figure(figsize=(16, 11.5))
    rows = []
    pos_of = {r: i for i, r in enumerate(ds.rows.tolist())}
    for n, row in enumerate(picks):
        f = model[model.row == row].iloc[0]
        ax = fig.add_subplot(5, 8, n + 1)
        ax.imshow(ds.pixels[pos_of[int(row)]], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{n}: {EMOTIONS[int(f.label)]}\n-> {EMOTIONS[int(f.suggested_label)]}"
                     f" ({f.score:.2f})", fontsize=9)
        ax.axis("off")
        rows.append({"n": n, "image_id": str(f.image_id), "given": EMOTIONS[int(f.label)],
                     "suggested": EMOTIONS[int(f.suggested_label)],
                     "score": round(float(f.score), 4)})
    save_figure(fig, out)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", default=os.environ.get("FERCLEAN_DATA"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--cache", default="/tmp/ferclean-label-bench")
    parser.add_argument("--sheet", default="/tmp/ferclean-label-bench/review.png")
    args = parser.parse_args()
    if not args.data:
        parser.error("pass the FER-2013 zip or set FERCLEAN_DATA")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ds = ferclean.load(args.data).split("Training")
    labels = ds.labels.astype(np.int64)
    rng = np.random.default_rng(SEED)
    uniform = flip_uniform(labels, rng)
    out: dict = {"data": Path(args.data).name, "rate": RATE, "seed": SEED,
                 "model": "patches (PatchFeatures 256 filters, stride 2, 3x3 pooling + LDA)",
                 "folds": args.folds, "cpu_count": os.cpu_count()}
    started = time.perf_counter()
    out["uniform"], result, model, flipped = measure("uniform", ds, uniform, args.folds,
                                                     cache, seed=0)
    print(json.dumps(out["uniform"], indent=1), flush=True)

    # the class each class is most confused with, by run 1's out-of-fold model, counted
    # on the untouched labels only
    pred = result.pred_probs.argmax(1)
    confusion = np.zeros((7, 7), np.int64)
    np.add.at(confusion, (labels[~flipped], pred[~flipped]), 1)
    np.fill_diagonal(confusion, 0)
    confused = confusion.argmax(axis=1)
    out["most_confused"] = {EMOTIONS[k]: EMOTIONS[int(confused[k])] for k in range(7)}
    hard = flip_confused(labels, confused, np.random.default_rng(SEED + 1))
    out["confused"], _, _, _ = measure("confused", ds, hard, args.folds, cache, seed=0)
    print(json.dumps(out["confused"], indent=1), flush=True)

    # review by eye: 40 of the 400 top-ranked flags whose labels were not planted
    unplanted = model[~flipped[np.searchsorted(ds.rows, model.row.to_numpy())]]
    top = unplanted.sort_values("score", ascending=False, kind="stable").head(400)
    picks = np.sort(np.random.default_rng(SEED + 2).choice(top.row.to_numpy(), 40,
                                                           replace=False))
    out["review_sample"] = contact_sheet(ds, picks, unplanted, Path(args.sheet))
    out["seconds"] = round(time.perf_counter() - started, 1)
    if RESULTS.exists():
        old = json.loads(RESULTS.read_text())
        if "review" in old:
            out["review"] = old["review"]
    write_json(RESULTS, out)
    print(f"wrote {RESULTS}; contact sheet {args.sheet}")


if __name__ == "__main__":
    main()
