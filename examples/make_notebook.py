"""Regenerate examples/walkthrough.ipynb from the cells below (keeps the notebook diffable).

    python examples/make_notebook.py
"""

from __future__ import annotations

import json
from pathlib import Path

CELLS = [
    ("markdown", """# ferclean walkthrough

Load → audit → look at the findings as DataFrames → clean → check leakage → train the
reference model briefly → compare. It runs on the built-in demo data; set
`FERCLEAN_DATA` to the FER-2013 zip (or CSV) to run it on the real data."""),
    ("code", """import os

import ferclean
from ferclean.demo import make_demo

path = os.environ.get("FERCLEAN_DATA")
ds = ferclean.load(path) if path else make_demo(n_faces=400).dataset
ds"""),
    ("code", """ds.counts()  # images per split and emotion"""),
    ("markdown", """## Audit
Every auditor runs over one shared context (hashes are computed once). Findings are a
DataFrame: one row per flagged image and issue, typed by `kind` (exact, near, mirror).
Label conflicts and leaks count exact and near copies apart; mirrored copies are searched
for on request (`mirror=True`), as `strict` cleaning needs."""),
    ("code", """result = ferclean.audit(ds, params={"near_duplicate": {"mirror": True}})
result.table()"""),
    ("code", """leaks = result.of("cross_split_leak")
leaks.head()"""),
    ("code", """result.of("label_conflict").groupby("group").detail.first().head()"""),
    ("code", """result.of("outlier").sort_values("score", ascending=False).head()"""),
    ("markdown", """## Clean
`strict` removes from Training the duplicates, conflicting copies, outliers and every
exact, near or mirrored copy of a test image; the test splits stay untouched. The
manifest lists every removed image."""),
    ("code", """from ferclean.cleaning import clean, restore

cleaned, manifest = clean(ds, "strict", result)  # acts on the audit's findings
print(len(ds), "->", len(cleaned))
manifest.summary()"""),
    ("code", """removed = ds[manifest.removed.position.to_numpy()]
assert restore(cleaned, manifest, removed).equals(ds)  # nothing is lost"""),
    ("markdown", """## Check leakage
Before cleaning, test images have exact, near and mirrored copies in Training; after
`strict`, none."""),
    ("code", """from ferclean.protocol import check_leakage

tests = ["PublicTest", "PrivateTest"]
before = check_leakage(ds.split("Training"), ds.split(tests), near=True, mirror=True)
after = check_leakage(cleaned.split("Training"), cleaned.split(tests), near=True, mirror=True)
print(len(before), "leaking pairs before,", len(after), "after")
assert len(after) == 0"""),
    ("markdown", """## Train the reference model briefly and compare
(Needs the `bench` extra: `pip install 'ferclean[bench]'`.) One short run on the raw and
on the cleaned Training split, both scored on the same untouched PrivateTest."""),
    ("code", """try:
    import jax  # noqa: F401
    have_jax = True
except ImportError:
    have_jax = False

if have_jax:
    from ferclean.learning import TrainConfig, classification_metrics, predict_proba, train

    config = TrainConfig(epochs=2, batch_size=32, model_kwargs={"bn_momentum": 0.9})
    test = ds.split("PrivateTest")
    for name, data in [("raw", ds), ("strict", cleaned)]:
        model = train((data.split("Training"), data.split("PublicTest")), config)
        metrics = classification_metrics(test.labels, predict_proba(model, test))
        print(f"{name}: PrivateTest accuracy {metrics['accuracy']:.3f}")"""),
]


def build() -> dict:
    cells = []
    for kind, text in CELLS:
        cell = {"cell_type": kind, "metadata": {}, "source": text.splitlines(keepends=True)}
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3",
                                                        "language": "python",
                                                        "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


if __name__ == "__main__":
    out = Path(__file__).with_name("walkthrough.ipynb")
    out.write_text(json.dumps(build(), indent=1) + "\n")
    print(f"wrote {out}")
