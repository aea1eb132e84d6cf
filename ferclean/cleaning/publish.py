"""Publishing a cleaned dataset: a self-describing, byte-reproducible release folder.

A release holds the Kaggle CSV and the image-folder zip, the removed images, the
manifest, a dataset card (``README.md``), figures, ``metadata.json`` and ``SHA256SUMS``.
Publishing the same input with the same plan and findings twice gives identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ferclean._atomic import atomic_dir, refuse_input_overwrite
from ferclean._figures import new_figure, save_figure
from ferclean._json import dumps
from ferclean.cleaning.manifest import Manifest
from ferclean.cleaning.outputs import _can_copy_files, _existing_source
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.io import save
from ferclean.io.npz import write_npz

if TYPE_CHECKING:  # pragma: no cover
    from ferclean.cleaning.apply import CleanResult

__all__ = ["publish"]


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _counts_table(info: dict[str, Any]) -> pd.DataFrame:
    before = pd.DataFrame(info["counts_before"]).T
    after = pd.DataFrame(info["counts_after"]).T.reindex(index=before.index, columns=before.columns)
    after = after.fillna(0).astype(int)
    rows = []
    for split in before.index:
        for emotion in before.columns:
            b, a = int(before.loc[split, emotion]), int(after.loc[split, emotion])
            rows.append({"split": split, "emotion": emotion, "before": b, "after": a,
                         "removed": b - a})
    return pd.DataFrame(rows)


def _figures(dataset: FaceDataset, manifest: Manifest, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    table = _counts_table(manifest.info)
    n_splits = len(table.split.unique())
    fig = new_figure(figsize=(4 * n_splits, 3.2), dpi=90, layout="tight")
    axes = fig.subplots(1, n_splits, squeeze=False)
    for ax, (split, part) in zip(axes[0], table.groupby("split", sort=False), strict=False):
        x = np.arange(len(part))
        ax.bar(x - 0.2, part.before, 0.4, label="before")
        ax.bar(x + 0.2, part.after, 0.4, label="after")
        ax.set_xticks(x, part.emotion, rotation=45, ha="right")
        ax.set_title(split)
    axes[0][0].legend()
    save_figure(fig, folder / "class_counts.png", dpi=90)
    names.append("figures/class_counts.png")

    removed = manifest.removed
    if len(removed):
        reasons = removed.issues.str.split(";").explode()
        counts = reasons.value_counts().sort_index()
        fig = new_figure(figsize=(5, 0.5 + 0.4 * len(counts)), dpi=90, layout="tight")
        ax = fig.subplots()
        ax.barh(counts.index, counts.values)
        ax.set_xlabel("images removed")
        save_figure(fig, folder / "removed_by_issue.png", dpi=90)
        names.append("figures/removed_by_issue.png")
        # a few removed images per issue, so readers see what went
        shown = []
        for issue in sorted(reasons.unique()):
            pos = removed.position[removed.issues.str.contains(issue, regex=False)].to_numpy()[:8]
            shown.append((issue, pos))
        fig = new_figure(figsize=(8, 1.1 * len(shown)), dpi=90, layout="tight")
        axes = fig.subplots(len(shown), 8, squeeze=False)
        for r, (issue, pos) in enumerate(shown):
            for c in range(8):
                ax = axes[r][c]
                ax.axis("off")
                if c < len(pos):
                    ax.imshow(dataset.pixels[pos[c]], cmap="gray", vmin=0, vmax=255)
            axes[r][0].set_title(issue, fontsize=7, loc="left")
        save_figure(fig, folder / "removed_examples.png", dpi=90)
        names.append("figures/removed_examples.png")
    return names


def _card(name: str, manifest: Manifest, files: dict[str, str], figures: list[str]) -> str:
    info = manifest.info
    table = _counts_table(info)
    per_split = table.groupby("split", sort=False)[["before", "after", "removed"]].sum()
    per_split.loc["total"] = per_split.sum()
    lines = [
        f"# {name}",
        "",
        f"FER-2013 cleaned with ferclean {info['ferclean_version']} using the "
        f"`{info['plan']['name']}` plan: {info['plan']['description']}.",
        "",
        f"{info['n_before']:,} images in, {info['n_after']:,} kept, "
        f"{info['n_before'] - info['n_after']:,} removed. Nothing is lost: the removed "
        "images and a manifest of why each one went are part of this release.",
        "",
        "## Images per split",
        "",
        "| split | before | after | removed |",
        "|---|---:|---:|---:|",
        *(f"| {s} | {r.before:,} | {r.after:,} | {r.removed:,} |"
          for s, r in per_split.iterrows()),
        "",
        "## Images per split and emotion (before -> after)",
        "",
        "| split | " + " | ".join(EMOTIONS) + " |",
        "|---|" + "---:|" * len(EMOTIONS),
    ]
    for split, part in table.groupby("split", sort=False):
        cells = [f"{r.before:,} -> {r.after:,}" for r in part.itertuples()]
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    lines += ["", "## What was removed and why", ""]
    removed = manifest.removed
    if removed.empty:
        lines.append("Nothing: this plan removes no images.")
    else:
        by_issue = removed.issues.str.split(";").explode().value_counts().sort_index()
        lines += ["| issue | images | rule |", "|---|---:|---|"]
        rules = {r["issue"]: r for r in info["plan"]["rules"]}
        from ferclean.cleaning.plan import Rule

        for issue, n in by_issue.items():
            rule = Rule.from_dict(rules[issue]).describe() if issue in rules else ""
            lines.append(f"| {issue} | {n:,} | {rule} |")
        lines += ["", "An image flagged by several issues is counted under each; "
                  "`manifest.json` lists every removed image with its original row, id, "
                  "split, label, issues, groups, pixel SHA-256 and reason."]
    for fig in figures:
        lines += ["", f"![{Path(fig).stem}]({fig})"]
    lines += [
        "", "## Plan and parameters", "", "```json",
        json.dumps(info["plan"], indent=2), "```", "",
        "## Files", "",
        *(f"* `{v}`: {k}" for k, v in files.items()),
        "* `manifest.json`: every removed image and why; checksums before and after",
        "* `metadata.json`: machine-readable description of this release",
        "* `SHA256SUMS`: SHA-256 of every file (`sha256sum -c SHA256SUMS`)",
        "",
        "## How to restore the original",
        "",
        "```bash",
        "ferclean restore . --out fer2013-original.csv",
        "```",
        "",
        "rebuilds the input exactly — pixels, labels, splits and order — and checks it "
        "against the manifest's checksum "
        f"`{info['checksum_before'][:16]}...`.",
        "",
    ]
    return "\n".join(lines)


def publish(
    result: CleanResult,
    out: str | os.PathLike,
    *,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a self-describing release of a cleaning ``result`` into folder ``out``.

    ``out`` receives ``data/<name>.csv`` (Kaggle CSV, exact), ``data/<name>.zip``
    (image folder; the original JPEG files when the input was a zip or folder),
    ``removed/removed.npz`` and ``removed/removed.csv``, ``manifest.json``,
    ``figures/*.png``, ``README.md`` (the dataset card), ``metadata.json`` and
    ``SHA256SUMS``. The same input, plan and findings always give byte-identical files.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.cleaning import audit_and_clean, restore_from
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> out = publish(audit_and_clean(ds, "seed-final"),
    ...               pathlib.Path(tempfile.mkdtemp()) / "release")
    >>> (out / "SHA256SUMS").exists() and restore_from(out).equals(ds)
    True
    """
    dataset, cleaned, manifest = result.original, result.cleaned, result.manifest
    if dataset.synthetic.any() or dataset.resampled:
        raise ValueError("refusing to publish a resampled dataset or synthetic (SMOTE) "
                         "images: publish the data as loaded, resample at training time")
    refuse_input_overwrite(out, _existing_source(dataset))
    plan_name = manifest.info["plan"]["name"]
    stem = name or f"fer2013-{plan_name}"
    files = {"cleaned data, Kaggle CSV (exact pixels)": f"data/{stem}.csv",
             "cleaned data, image-folder zip": f"data/{stem}.zip",
             "removed images, lossless (ferclean npz)": "removed/removed.npz",
             "removed images, Kaggle CSV": "removed/removed.csv"}
    removed = result.removed
    manifest.info["files"] = {"cleaned": f"data/{stem}.csv", "format": "csv",
                              "removed": "removed/removed.npz"}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "data").mkdir()
        (tmp / "removed").mkdir()
        save(cleaned, tmp / f"data/{stem}.csv")
        if _can_copy_files(cleaned):
            from ferclean.io.folder import copy_files

            copy_files(cleaned, tmp / f"data/{stem}.zip")  # the original JPEG files
        else:
            with warnings.catch_warnings():
                # JPEG re-encoded from exact pixels is lossy by nature; the card says the
                # CSV is the exact copy
                warnings.simplefilter("ignore", UserWarning)
                save(cleaned, tmp / f"data/{stem}.zip")
        write_npz(removed, tmp / "removed/removed.npz")
        save(removed, tmp / "removed/removed.csv")
        (tmp / "manifest.json").write_text(manifest.to_json())
        figures = _figures(dataset, manifest, tmp / "figures")
        (tmp / "README.md").write_text(_card(stem, manifest, files, figures))
        from ferclean._version import __version__

        metadata = {
            "name": stem,
            "ferclean_version": __version__,
            "plan": manifest.info["plan"],
            "n_before": manifest.info["n_before"],
            "n_after": manifest.info["n_after"],
            "checksum_before": manifest.info["checksum_before"],
            "checksum_after": manifest.info["checksum_after"],
            "splits_after": cleaned.split_counts(),
            "labels_after": cleaned.label_counts(),
            "removed_by_issue": manifest.removed.issues.str.split(";").explode()
            .value_counts().sort_index().astype(int).to_dict() if len(removed) else {},
            "files": sorted([*files.values(), "manifest.json", "README.md", *figures]),
            "emotions": list(EMOTIONS),
            "splits": list(SPLITS),
        }
        (tmp / "metadata.json").write_text(dumps(metadata, sort_keys=True))
        sums = [f"{_sha256_file(p)}  {p.relative_to(tmp).as_posix()}"
                for p in sorted(tmp.rglob("*")) if p.is_file()]
        (tmp / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return Path(out)
