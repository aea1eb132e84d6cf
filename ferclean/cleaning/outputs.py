"""The clean output folder: cleaned data, removed images and manifest; and reading it back.

A clean output folder holds the cleaned data (in the input's form unless told otherwise),
``removed.npz`` (the removed images, lossless, with their ids and rows) and
``manifest.json``. Everything is written into a temporary folder and renamed into place,
so a crash never leaves an output that looks complete; the folder goes through the output
guard (:mod:`ferclean._outputs`): never the input or inside it, and an existing folder is
replaced only with ``overwrite=True`` and only if ferclean wrote it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ferclean._outputs import dataset_inputs, output_dir
from ferclean.cleaning.manifest import Manifest, _ranges, _unranges, restore
from ferclean.dataset import FaceDataset
from ferclean.io import detect_format, load, save
from ferclean.io.npz import read_npz, write_npz

if TYPE_CHECKING:  # pragma: no cover
    from ferclean.cleaning.apply import CleanResult

__all__ = ["restore_from", "save_clean"]

_CLEANED_NAMES = {"csv": "cleaned.csv", "zip": "cleaned.zip", "folder": "cleaned",
                  "npz": "cleaned.npz", "parquet": "cleaned.parquet"}
#: What a clean output folder holds: recognises one written before the output marker
#: (``removed`` is the Dask engine's folder of removed shards).
CLEAN_FILES = (*_CLEANED_NAMES.values(), "removed.npz", "removed", "manifest.json")


def _source_format(dataset: FaceDataset) -> str:
    """The form the dataset was read from; ``npz`` when it came from no file (the demo)."""
    source = _existing_source(dataset)
    try:
        return detect_format(source) if source else "npz"
    except ValueError:
        return "npz"


def _save_quiet(ds: FaceDataset, path: Path, fmt: str, *, copy: bool = True) -> None:
    """Save for restore-exactness: image forms copy the original files when there are any
    (and ``copy``: not when images were relabeled, their folders name the old labels),
    and are written as PNG (lossless) otherwise."""
    if fmt in ("zip", "folder"):
        if copy and _can_copy_files(ds):
            from ferclean.io.folder import copy_files

            copy_files(ds, path)
        else:
            save(ds, path, format=fmt, image_format="png")
        return
    save(ds, path, format=fmt)


def _existing_source(ds: FaceDataset) -> str | None:
    """The dataset's input path, if it is a file or folder (the demo has none)."""
    return ds.source if ds.source and Path(ds.source).exists() else None


def _can_copy_files(ds: FaceDataset) -> bool:
    return bool(ds.source) and _source_format(ds) in ("zip", "folder")


def save_clean(result: CleanResult, out: str | os.PathLike, *, format: str | None = None,
               overwrite: bool = False,
               inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Write a clean output folder ``out`` for ``result`` (what ``ferclean clean`` writes).

    ``out`` receives the cleaned data (``cleaned.csv``, ``cleaned.zip``, ``cleaned/`` or
    ``cleaned.npz``: the input's form unless ``format`` says otherwise), ``removed.npz``
    and ``manifest.json``. It is never the dataset's source, nor one of ``inputs`` (the
    command's other inputs: a findings folder, a plan file), nor inside them; an existing
    ``out`` is replaced only with ``overwrite=True``, and only if ferclean wrote it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.cleaning import audit_and_clean
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> out = save_clean(audit_and_clean(ds, "dedup"), pathlib.Path(tempfile.mkdtemp()) / "c")
    >>> sorted(p.name for p in out.iterdir())  # .ferclean-output: ferclean wrote it
    ['.ferclean-output', 'cleaned.npz', 'manifest.json', 'removed.npz']
    >>> restore_from(out).equals(ds)
    True
    """
    dataset, manifest = result.original, result.manifest
    inputs = (*dataset_inputs(dataset), *inputs)
    fmt = format or _source_format(dataset)
    manifest.info["files"] = {"cleaned": _CLEANED_NAMES[fmt], "format": fmt,
                              "removed": "removed.npz"}
    copy = result.relabeled.empty
    if fmt in ("zip", "folder") and not (copy and _can_copy_files(result.cleaned)):
        # written anew, the folder is read back sorted by its new paths: record the order
        manifest.info["files"]["read_order"] = _read_order(result.cleaned)
    with output_dir(out, what="ferclean clean output", inputs=inputs, overwrite=overwrite,
                    known=CLEAN_FILES) as tmp:
        _save_quiet(result.cleaned, tmp / _CLEANED_NAMES[fmt], fmt, copy=copy)
        write_npz(result.removed, tmp / "removed.npz")
        (tmp / "manifest.json").write_text(manifest.to_json())
    return Path(out)


def restore_from(out: str | os.PathLike) -> FaceDataset:
    """Rebuild the original dataset from a clean output folder (or a release).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.cleaning import audit_and_clean
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "clean"
    >>> _ = audit_and_clean(ds, "no-conflicts").save(out)
    >>> restore_from(out).checksum() == ds.checksum()
    True
    """
    out = Path(out)
    manifest = Manifest.load(out / "manifest.json")
    files = manifest.info.get("files") or {}
    if "cleaned" not in files:
        raise ValueError(f"{out}/manifest.json does not name its cleaned data file")
    cleaned = load(out / files["cleaned"], format=files.get("format"))
    if files.get("read_order") is not None:  # image i read back is cleaned image order[i]
        order = _unranges(files["read_order"])
        if len(order) != len(cleaned):
            raise ValueError(f"{out / files['cleaned']} holds {len(cleaned)} images; the "
                             f"manifest wrote {len(order)}")
        cleaned = cleaned[np.argsort(order)]
    removed_path = out / files.get("removed", "removed.npz")
    # the Dask engine writes the removed images as Parquet shards (removed_format)
    removed = (load(removed_path, format=files["removed_format"])
               if files.get("removed_format") else read_npz(removed_path))
    return restore(cleaned, manifest, removed)


def _read_order(ds: FaceDataset) -> list[list[int]]:
    """Which image of ``ds`` each image of its image-folder form is, in the order
    :func:`~ferclean.io.read_folder` reads them (sorted paths), as ranges."""
    from ferclean.io.folder import _output_names

    names = _output_names(ds, "png")
    return _ranges(np.array(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64))
