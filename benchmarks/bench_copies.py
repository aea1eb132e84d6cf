"""Every copy counts: near-duplicate label conflicts and leaks on the real FER-2013, what
mirrored copies cost, and what ``strict`` leaves behind.

Usage::

    python benchmarks/bench_copies.py [FER2013_ZIP] [--repeats 5]

Measures, on the real data:

- the near-duplicate auditor's time without and with mirrored copies (best and median of
  ``--repeats``, default 9, interleaved runs each, on a fresh context whose exact groups
  are computed first);
- the default audit's label conflicts and cross-split leaks (and those of the audit with
  ``mirror=True``), exact and near counted apart, leaks per split pair, and the largest
  near groups with their label distribution;
- after ``clean --plan strict`` (on the ``mirror=True`` audit, which strict needs): how
  many test images still have an exact, near or mirrored copy in the cleaned Training
  (``check_leakage(..., near=True, mirror=True)``) and how many label conflicts remain
  inside it, against the same counts before.

Writes ``benchmarks/results/copies.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import ferclean
from ferclean._json import write_json
from ferclean.auditors import AuditContext, NearDuplicateAuditor
from ferclean.dataset import EMOTIONS
from ferclean.protocol import check_leakage

HERE = Path(__file__).resolve().parent
TESTS = ["PublicTest", "PrivateTest"]


def _near_times(ds: ferclean.FaceDataset, repeats: int) -> dict:
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for mirror in (False, True):
            context = AuditContext(ds)
            context.exact_groups  # noqa: B018 - shared by every auditor; not the near cost
            start = time.perf_counter()
            NearDuplicateAuditor(mirror=mirror).audit(ds, context)
            times[mirror].append(time.perf_counter() - start)
    best = {m: min(v) for m, v in times.items()}
    median = {m: float(np.median(v)) for m, v in times.items()}
    return {"without_mirror_s": round(best[False], 2), "with_mirror_s": round(best[True], 2),
            "ratio": round(best[True] / best[False], 2), "repeats": repeats,
            # the machine is shared: medians say how much one lucky run moves the best
            "median_ratio": round(median[True] / median[False], 2),
            "all_s": {str(m).lower(): [round(x, 2) for x in v] for m, v in times.items()}}


def _largest_near_groups(findings, n: int = 5) -> list[dict]:
    near = findings[findings["kind"] != "exact"]
    sizes = near.groupby("group").size().sort_values(ascending=False, kind="stable")
    out = []
    for group in sizes.index[:n]:
        part = near[near["group"] == group]
        labels = part["label"].value_counts()
        out.append({"images": int(len(part)), "kind": str(part["kind"].iloc[0]),
                    "labels": {EMOTIONS[k]: int(v) for k, v in labels.items() if k >= 0},
                    "splits": {k: int(v) for k, v in part["split"].value_counts().items()}})
    return out


def _audit_figures(result: ferclean.AuditResult, seconds: float) -> dict:
    issues = result.summary["issues"]
    out: dict = {"audit_s": round(seconds, 2),
                 "near_duplicate": {k: issues["near_duplicate"][k]
                                    for k in ("groups", "images", "pairs", "mirror_pairs")}}
    for name in ("label_conflict", "cross_split_leak"):
        entry = {k: v for k, v in issues[name].items() if k != "by_pair"}
        part = result.of(name)
        entry["mirror_groups"] = int(part.loc[part.kind == "mirror", "group"].nunique())
        entry["largest_near_groups"] = _largest_near_groups(part)
        out[name] = entry
    out["cross_split_leak"]["by_pair"] = issues["cross_split_leak"]["by_pair"]
    return out


def _what_strict_leaves(ds: ferclean.FaceDataset, result: ferclean.AuditResult) -> dict:
    cleaned, manifest = ferclean.clean(ds, "strict", result)
    out = {"removed": len(manifest.removed),
           "removed_from_test_splits": int((manifest.removed.split != "Training").sum())}
    for name, data in (("before", ds), ("after", cleaned)):
        leaks = check_leakage(data.split("Training"), data.split(TESTS), near=True, mirror=True)
        conflicts = ferclean.audit(data.split("Training"), only=["label_conflict"])
        out[name] = {
            "test_images_with_a_copy_in_training": int(leaks.test_position.nunique()),
            "by_kind": {k: int(v) for k, v in leaks.drop_duplicates("test_position")
                        .kind.value_counts().items()},
            "label_conflicts_inside_training": conflicts.summary["issues"]["label_conflict"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("FERCLEAN_DATA", str(HERE.parent.parent / "shared/data/fer2013.zip"))
    parser.add_argument("data", nargs="?", default=default)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    ds = ferclean.load(args.data)
    report: dict = {"benchmark": "copies", "source": Path(args.data).name, "n_images": len(ds)}
    report["near_duplicate_time"] = _near_times(ds, args.repeats)
    for name, params in (("default", None), ("mirror", {"near_duplicate": {"mirror": True}})):
        start = time.perf_counter()
        result = ferclean.audit(ds, params=params)  # as `ferclean audit [--mirror]` runs it
        report[name] = _audit_figures(result, time.perf_counter() - start)
    # strict needs near and mirrored copies examined: the --mirror audit's findings
    report["strict"] = _what_strict_leaves(ds, result)
    issues = report["default"]
    write_json(HERE / "results" / "copies.json", report)
    leaks_after = report["strict"]["after"]["test_images_with_a_copy_in_training"]
    print(f"near auditor {report['near_duplicate_time']['without_mirror_s']} s, with mirror "
          f"{report['near_duplicate_time']['with_mirror_s']} s "
          f"({report['near_duplicate_time']['ratio']}x); conflicts "
          f"{issues['label_conflict']['groups']}+{issues['label_conflict']['near_groups']} near;"
          f" leaks {issues['cross_split_leak']['groups']}+"
          f"{issues['cross_split_leak']['near_groups']} near; after strict: {leaks_after} "
          f"test images with a copy in Training")
    assert np.isfinite(report["near_duplicate_time"]["ratio"])


if __name__ == "__main__":
    main()
