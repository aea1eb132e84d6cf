"""Publishing a cleaned dataset: a self-describing, byte-reproducible release folder.

A release holds the Kaggle CSV and the image-folder zip, the removed images, the
manifest, a dataset card (``README.md``), figures, ``metadata.json`` and ``SHA256SUMS``.
Publishing the same input with the same plan and findings twice gives identical bytes,
from whatever folder the input is read: a release records the input's file name and
SHA-256, never its path.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ferclean._figures import new_figure, save_figure
from ferclean._json import dumps
from ferclean._outputs import dataset_inputs, output_dir, write_marker
from ferclean.cleaning.manifest import Manifest
from ferclean.cleaning.outputs import _can_copy_files
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.io import save
from ferclean.io.npz import write_npz

if TYPE_CHECKING:  # pragma: no cover
    from ferclean.cleaning.apply import CleanResult

__all__ = ["publish"]

#: What a release folder holds: recognises one written before the output marker.
RELEASE_FILES = ("README.md", "metadata.json", "manifest.json", "SHA256SUMS", "data",
                 "removed", "figures")
RELEASE = "ferclean release"
#: JPEG quality of a release's zip when its images are encoded from pixels.
ZIP_JPEG_QUALITY = 95


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


def _source_record(dataset: FaceDataset) -> dict[str, str | None]:
    """The input as a release records it: file name and SHA-256, not its path (the same
    data published from another folder gives the same bytes)."""
    source = dataset.source
    if not source:
        return {"source": None, "source_sha256": None}
    path = Path(source)
    return {"source": path.name or str(source),
            "source_sha256": _sha256_file(path) if path.is_file() else None}


def _zip_images(cleaned: FaceDataset, zip_path: Path, copied: bool) -> dict[str, Any]:
    """How the release's zip holds its images, and how far they are from the exact pixels."""
    if copied:
        return {"images": "original files", "max_grey_level_difference": 0}
    from ferclean.io.folder import _output_names, read_folder

    largest = 0
    if len(cleaned):
        # write_folder writes (and read_folder reads) the images sorted by file name
        names = _output_names(cleaned, "jpg")
        order = np.array(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64)
        back = read_folder(zip_path).pixels
        for a in range(0, len(order), 4096):  # chunks: no full int16 copy of the data
            exact = cleaned.pixels[order[a:a + 4096]].astype(np.int16)
            largest = max(largest, int(np.abs(back[a:a + 4096] - exact).max()))
    return {"images": "jpeg", "jpeg_quality": ZIP_JPEG_QUALITY,
            "max_grey_level_difference": largest}


def _zip_description(zip_images: dict[str, Any]) -> str:
    if zip_images["images"] == "original files":
        return ("cleaned data, image-folder zip: the original image files, byte for byte "
                "(the same pixels as the CSV)")
    return (f"cleaned data, image-folder zip: JPEG (quality {zip_images['jpeg_quality']}) "
            "re-encoded from the exact pixels, at most "
            f"{zip_images['max_grey_level_difference']} grey levels off them; the CSV holds "
            "the exact pixels")


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
        f"Input: `{info['source']}`"
        + (f" (SHA-256 `{info['source_sha256']}`)." if info.get("source_sha256") else "."),
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
    inputs: Iterable[str | os.PathLike | None] = (),
) -> Path:
    """Write a self-describing release of a cleaning ``result`` into folder ``out``.

    ``out`` receives ``data/<name>.csv`` (Kaggle CSV, exact pixels), ``data/<name>.zip``
    (image folder: the original files when the input was a zip or folder, else JPEG
    re-encoded from the exact pixels, a few grey levels off, which ``metadata.json``
    (``data_zip``) and the card state), ``removed/removed.npz`` and
    ``removed/removed.csv``, ``manifest.json``, ``figures/*.png``, ``README.md`` (the
    dataset card), ``metadata.json`` and ``SHA256SUMS``. The same input, plan and findings
    always give byte-identical files, wherever the input lies: the input is recorded by
    file name and SHA-256.

    ``out`` is never the dataset's source or one of ``inputs`` (the command's other
    inputs), nor inside them; an existing ``out`` is replaced only with
    ``overwrite=True``, and only if ferclean wrote it.

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
    inputs = (*dataset_inputs(dataset), *inputs)
    plan_name = manifest.info["plan"]["name"]
    stem = name or f"fer2013-{plan_name}"
    copied = _can_copy_files(cleaned) and result.relabeled.empty  # folders name old labels
    source = _source_record(dataset)
    # the release's own copy: the input by name and checksum, never by path
    manifest = Manifest(manifest.removed, {
        **manifest.info, **source, "files": {"cleaned": f"data/{stem}.csv", "format": "csv",
                                             "removed": "removed/removed.npz"}},
        manifest.relabeled)
    removed = copy.copy(result.removed)
    removed.source = source["source"]  # removed.npz records its source too
    with output_dir(out, what=RELEASE, inputs=inputs, overwrite=overwrite,
                    known=RELEASE_FILES) as tmp:
        (tmp / "data").mkdir()
        (tmp / "removed").mkdir()
        save(cleaned, tmp / f"data/{stem}.csv")
        if copied:
            from ferclean.io.folder import copy_files

            copy_files(cleaned, tmp / f"data/{stem}.zip")  # the original JPEG files
        else:
            from ferclean.io.folder import write_folder

            with warnings.catch_warnings():
                # JPEG re-encoded from exact pixels is lossy by nature; the card and
                # metadata.json say by how much, and that the CSV is the exact copy
                warnings.simplefilter("ignore", UserWarning)
                write_folder(cleaned, tmp / f"data/{stem}.zip", quality=ZIP_JPEG_QUALITY)
        zip_images = _zip_images(cleaned, tmp / f"data/{stem}.zip", copied)
        files = {"cleaned data, Kaggle CSV: the exact pixels": f"data/{stem}.csv",
                 _zip_description(zip_images): f"data/{stem}.zip",
                 "removed images, lossless (ferclean npz)": "removed/removed.npz",
                 "removed images, Kaggle CSV (exact pixels)": "removed/removed.csv"}
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
            **source,
            "data_zip": zip_images,
            "splits_after": cleaned.split_counts(),
            "labels_after": cleaned.label_counts(),
            "removed_by_issue": manifest.removed.issues.str.split(";").explode()
            .value_counts().sort_index().astype(int).to_dict() if len(removed) else {},
            "files": sorted([*files.values(), "manifest.json", "README.md", *figures]),
            "emotions": list(EMOTIONS),
            "splits": list(SPLITS),
        }
        (tmp / "metadata.json").write_text(dumps(metadata, sort_keys=True))
        write_marker(tmp, RELEASE)  # now, so that SHA256SUMS lists every file
        sums = [f"{_sha256_file(p)}  {p.relative_to(tmp).as_posix()}"
                for p in sorted(tmp.rglob("*")) if p.is_file()]
        (tmp / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return Path(out)
