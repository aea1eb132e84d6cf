"""How much of FER-2013's official test data has a copy in Training.

Usage::

    python benchmarks/bench_leakage.py [FER2013_ZIP] [--sheet FILE]

For PublicTest and PrivateTest, :func:`ferclean.protocol.check_leakage` lists the test
images with an exact, near or mirrored copy in Training (``near=True, mirror=True``, the
defaults of the near-duplicate index); the counts say how much each kind adds. These are
the images the benchmark suite's ``PrivateTest_deleaked`` leaves out.

A seeded sample of 24 PrivateTest images whose only copies are near or mirrored ones is
drawn as a contact sheet (``--sheet``, default ``/tmp/ferclean_leak_sheet.png``; never
into the repository: the images are FER-2013's) for a person to judge; the verdicts live
in ``benchmarks/results/leak_review.json`` (``{"verdicts": {"<test_id>|<train_id>":
"copy" | "different" | "unsure"}}``) and the share judged copies is reported.

Writes ``benchmarks/results/leakage.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from ferclean._json import write_json
from ferclean.io import load
from ferclean.protocol import check_leakage

HERE = Path(__file__).resolve().parent
REVIEW = HERE / "results" / "leak_review.json"
SAMPLE, SAMPLE_SEED = 24, 1


def _key(row) -> str:
    return f"{row.test_id}|{row.train_id}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("FERCLEAN_DATA", str(HERE.parent.parent / "shared/data/fer2013.zip"))
    parser.add_argument("data", nargs="?", default=default)
    parser.add_argument("--sheet", default="/tmp/ferclean_leak_sheet.png")
    args = parser.parse_args()

    ds = load(args.data)
    train = ds.split("Training")
    result: dict = {"benchmark": "leakage", "source": Path(args.data).name,
                    "training_images": len(train), "splits": {}}
    # one call for both test splits: Training is hashed and indexed once
    tests = ds.split(["PublicTest", "PrivateTest"])
    t = time.perf_counter()
    all_leaks = check_leakage(train, tests, near=True, mirror=True)
    result["check_leakage_s"] = round(time.perf_counter() - t, 2)
    for split in ("PublicTest", "PrivateTest"):
        test = ds.split(split)
        in_split = all_leaks[all_leaks.test_split == split]
        # positions in this split's own order (tests holds PublicTest, then PrivateTest)
        position = np.flatnonzero(tests.split_names == split)
        leaks = in_split.assign(test_position=np.searchsorted(position,
                                                              in_split.test_position))
        exact = set(leaks.test_position[leaks.kind == "exact"])
        near = set(leaks.test_position[leaks.kind == "near"])
        mirror = set(leaks.test_position[leaks.kind == "mirror"])
        leaked = exact | near | mirror
        result["splits"][split] = {
            "images": len(test),
            "with_exact_copy": len(exact),
            "with_near_copy_only": len(near - exact),
            "with_mirrored_copy_only": len(mirror - exact - near),
            "with_any_copy": len(leaked),
            "share_with_any_copy": round(len(leaked) / len(test), 4),
            "left_after_deleaking": len(test) - len(leaked),
        }
        print(split, result["splits"][split], flush=True)
        if split != "PrivateTest":
            continue
        # the claims exact matching cannot back: test images whose only copies are near
        only = leaks[(leaks.kind != "exact") & ~leaks.test_position.isin(exact)]
        sample = only.drop_duplicates("test_position").sample(
            SAMPLE, random_state=SAMPLE_SEED).sort_values("similarity")
        _sheet(test.pixels[sample.test_position.to_numpy()],
               train.pixels[sample.train_position.to_numpy()], args.sheet)
        verdicts = json.loads(REVIEW.read_text())["verdicts"] if REVIEW.exists() else {}
        judged = [verdicts.get(_key(r)) for r in sample.itertuples()]
        copies = sum(v == "copy" for v in judged)
        result["near_only_review"] = {
            "sample": [_key(r) for r in sample.itertuples()],
            "sample_seed": SAMPLE_SEED,
            "similarity_range": [round(float(sample.similarity.min()), 4),
                                 round(float(sample.similarity.max()), 4)],
            "judged_copy": copies,
            "judged_different": sum(v == "different" for v in judged),
            "judged_unsure": sum(v == "unsure" for v in judged),
            "not_judged": sum(v is None for v in judged),
            "sheet": args.sheet,
        }
        print("review", result["near_only_review"], flush=True)
    out = HERE / "results" / "leakage.json"
    write_json(out, result)
    print(f"wrote {out}")


def _sheet(left: np.ndarray, right: np.ndarray, path: str) -> None:
    """Pairs side by side, four pairs per row, scaled 2x."""
    from PIL import Image

    gap = np.full((48, 4), 255, np.uint8)
    pairs = [np.pad(np.hstack([a, gap, b]), ((2, 2), (6, 6)), constant_values=128)
             for a, b in zip(left, right, strict=True)]
    rows = [np.hstack(pairs[i:i + 4]) for i in range(0, len(pairs), 4)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=128) for r in rows]
    grid = np.vstack(rows)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2)).save(path)


if __name__ == "__main__":
    main()
