"""The clean output folder: cleaned data, removed images and manifest; and reading it back.

A clean output folder holds the cleaned data (in the input's form unless told otherwise),
``removed.npz`` (the removed images, lossless, with their ids and rows) and
``manifest.json``. Everything is written into a temporary folder and renamed into place,
so a crash never leaves an output that looks complete.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from ferclean._atomic import atomic_dir, refuse_input_overwrite
from ferclean.cleaning.manifest import Manifest, restore
from ferclean.dataset import FaceDataset
from ferclean.io import detect_format, load, save
from ferclean.io.npz import read_npz, write_npz

if TYPE_CHECKING:  # pragma: no cover
    from ferclean.cleaning.apply import CleanResult

__all__ = ["restore_from", "save_clean"]

_CLEANED_NAMES = {"csv": "cleaned.csv", "zip": "cleaned.zip", "folder": "cleaned",
                  "npz": "cleaned.npz"}


def _source_format(dataset: FaceDataset) -> str:
    """The form the dataset was read from; ``npz`` when it came from no file (the demo)."""
    source = _existing_source(dataset)
    try:
        return detect_format(source) if source else "npz"
    except ValueError:
        return "npz"


def _save_quiet(ds: FaceDataset, path: Path, fmt: str) -> None:
    """Save for restore-exactness: image forms copy the original files when there are any,
    and are written as PNG (lossless) when there are none."""
    if fmt in ("zip", "folder"):
        if _can_copy_files(ds):
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
               overwrite: bool = False) -> Path:
    """Write a clean output folder ``out`` for ``result`` (what ``ferclean clean`` writes).

    ``out`` receives the cleaned data (``cleaned.csv``, ``cleaned.zip``, ``cleaned/`` or
    ``cleaned.npz``: the input's form unless ``format`` says otherwise), ``removed.npz``
    and ``manifest.json``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.cleaning import audit_and_clean
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> out = save_clean(audit_and_clean(ds, "dedup"), pathlib.Path(tempfile.mkdtemp()) / "c")
    >>> sorted(p.name for p in out.iterdir())
    ['cleaned.npz', 'manifest.json', 'removed.npz']
    >>> restore_from(out).equals(ds)
    True
    """
    dataset, manifest = result.original, result.manifest
    refuse_input_overwrite(out, _existing_source(dataset))
    fmt = format or _source_format(dataset)
    manifest.info["files"] = {"cleaned": _CLEANED_NAMES[fmt], "format": fmt,
                              "removed": "removed.npz"}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        _save_quiet(result.cleaned, tmp / _CLEANED_NAMES[fmt], fmt)
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
    removed = read_npz(out / files.get("removed", "removed.npz"))
    return restore(cleaned, manifest, removed)
