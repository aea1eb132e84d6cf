"""Readers and writers for every FER-2013 form, chosen from the path or forced.

======== ============================================ ========== =========
format   what                                         read       write
======== ============================================ ========== =========
csv      Kaggle ``emotion,pixels,Usage`` (+ variants) fast       lossless
folder   ``train|test/<emotion>/<Split>_<n>.jpg``     parallel   jpg lossy,
         image folder                                            png lossless
zip      the same image folder inside a ``.zip``      parallel   as folder
npz      ferclean's own arrays                        fastest    lossless
parquet  one image per row (``.parquet`` or a folder  fast       lossless,
         of ``part-NNNNN.parquet`` shards; needs                 sharded
         pyarrow: ``pip install 'ferclean[dask]'``)
======== ============================================ ========== =========
"""

from __future__ import annotations

import os
from pathlib import Path

from ferclean._atomic import refuse_input_overwrite
from ferclean._outputs import dataset_inputs
from ferclean.dataset import FaceDataset
from ferclean.errors import check_on_bad

FORMATS: tuple[str, ...] = ("csv", "folder", "zip", "npz", "parquet")
_PARQUET_SUFFIXES = (".parquet", ".pq")  # as ferclean.io.parquet, which needs pyarrow


def detect_format(path: str | os.PathLike) -> str:
    """Guess the form of ``path``: a folder, or a file by its extension.

    A folder is a folder of Parquet shards (``parquet``) when it holds ``_ferclean.json``
    or ``*.parquet`` files and no subfolders, and an image folder otherwise.

    Examples
    --------
    >>> detect_format("fer2013.csv"), detect_format("fer2013.zip"), detect_format("d.npz")
    ('csv', 'zip', 'npz')
    >>> detect_format("d.parquet"), detect_format("d.pq")
    ('parquet', 'parquet')
    """
    p = Path(path)
    if p.is_dir():
        from ferclean.io.parquet import is_parquet_folder  # no pyarrow needed to look

        return "parquet" if is_parquet_folder(p) else "folder"
    suffix = p.suffix.lower()
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    if suffix == ".csv":
        return "csv"
    if suffix == ".zip":
        return "zip"
    if suffix == ".npz":
        return "npz"
    if not p.exists() and suffix == "":
        return "folder"  # an output folder that does not exist yet
    raise ValueError(
        f"{path}: cannot tell the format from the name; use a .csv, .zip, .npz or .parquet "
        f"file or a folder, or pass format= one of {', '.join(FORMATS)}"
    )


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def load(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    on_bad: str = "raise",
    progress: bool = False,
) -> FaceDataset:
    """Read a dataset in any supported form.

    Parameters
    ----------
    path : path-like
        A Kaggle CSV, an image folder, its ``.zip``, a ferclean ``.npz``, or the Parquet
        form (a ``.parquet`` file or a folder of shards; needs pyarrow,
        ``pip install 'ferclean[dask]'``).
    format : {"csv", "folder", "zip", "npz", "parquet"}, default=None
        Force a form instead of guessing it from ``path``.
    on_bad : {"raise", "skip", "report"}, default="raise"
        Raise at the first bad row or image, or drop bad ones and list them in
        ``dataset.dropped`` (``report`` also warns). ``npz`` files are all-or-nothing.
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    FaceDataset

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> p = save(demo_dataset(n_faces=300), d / "demo.csv")
    >>> len(load(p)) == len(demo_dataset(n_faces=300))
    True
    """
    check_on_bad(on_bad)
    fmt = _check_format(format) if format else detect_format(path)
    if fmt == "csv":
        from ferclean.io.csv import read_csv

        return read_csv(path, on_bad=on_bad, progress=progress)
    if fmt in ("folder", "zip"):
        from ferclean.io.folder import read_folder

        return read_folder(path, on_bad=on_bad, progress=progress)
    if fmt == "parquet":
        from ferclean.io.parquet import read_parquet

        return read_parquet(path, on_bad=on_bad, progress=progress)
    from ferclean.io.npz import read_npz

    return read_npz(path)


def save(
    ds: FaceDataset,
    path: str | os.PathLike,
    *,
    format: str | None = None,
    image_format: str = "jpg",
    shard_size: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a dataset in any supported form, atomically; never over its own source.

    Parameters
    ----------
    ds : FaceDataset
    path : path-like
        Output path; its extension (or ``format``) picks the form.
    format : {"csv", "folder", "zip", "npz", "parquet"}, default=None
    image_format : {"jpg", "png"}, default="jpg"
        Image encoding for the folder and zip forms. ``jpg`` is lossy (a warning says
        so); ``png`` is lossless.
    shard_size : int, default=None
        For ``parquet`` only: write a folder of shards of this many images (see
        :func:`ferclean.io.parquet.write_parquet`).
    overwrite : bool, default=False
        Replace an existing output.
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    Path
        The written path.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> p = save(ds, pathlib.Path(tempfile.mkdtemp()) / "demo.npz")
    >>> load(p).equals(ds)
    True
    """
    fmt = _check_format(format) if format else detect_format(path)
    refuse_input_overwrite(path, *dataset_inputs(ds))
    if shard_size is not None and fmt != "parquet":
        raise ValueError(f"{path}: shard_size is for the parquet form; this output is {fmt}")
    if fmt == "parquet":
        from ferclean.io.parquet import write_parquet

        return write_parquet(ds, path, shard_size=shard_size, overwrite=overwrite)
    if fmt == "csv":
        from ferclean.io.csv import write_csv

        return write_csv(ds, path, overwrite=overwrite, progress=progress)
    if fmt in ("folder", "zip"):
        from ferclean.io.folder import write_folder

        if fmt == "zip" and Path(path).suffix.lower() != ".zip":
            raise ValueError(f"{path}: a zip output must end in .zip")
        return write_folder(
            ds, path, image_format=image_format, overwrite=overwrite, progress=progress
        )
    from ferclean.io.npz import write_npz

    return write_npz(ds, path, overwrite=overwrite)


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    src_format: str | None = None,
    dst_format: str | None = None,
    image_format: str = "jpg",
    shard_size: int | None = None,
    on_bad: str = "raise",
    overwrite: bool = False,
    progress: bool = False,
) -> FaceDataset | None:
    """Convert a dataset between forms (``load`` then ``save``); returns what was read.

    Only JPEG image output is lossy, and it warns; every other conversion keeps pixels,
    labels and splits exactly. ``shard_size`` writes Parquet shards of that many images
    (``dst`` is then a folder of shards, whatever its name says).

    From Parquet to a folder of Parquet shards the conversion streams, one shard in
    memory at a time, and returns ``None`` (nothing was held whole to return).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> src = save(demo_dataset(n_faces=300), d / "demo.npz")
    >>> _ = convert(src, d / "demo.csv")
    >>> load(d / "demo.csv").equals(load(src))
    True
    """
    refuse_input_overwrite(dst, src)
    if shard_size is not None and dst_format is None:
        dst_format = "parquet"
    src_fmt = _check_format(src_format) if src_format else detect_format(src)
    dst_fmt = _check_format(dst_format) if dst_format else detect_format(dst)
    if src_fmt == dst_fmt == "parquet" and Path(dst).suffix.lower() not in _PARQUET_SUFFIXES:
        from ferclean.io.parquet import convert_parquet

        convert_parquet(src, dst, shard_size=shard_size, on_bad=on_bad, overwrite=overwrite,
                        progress=progress)
        return None
    ds = load(src, format=src_fmt, on_bad=on_bad, progress=progress)
    save(
        ds, dst, format=dst_fmt, image_format=image_format, shard_size=shard_size,
        overwrite=overwrite, progress=progress,
    )
    return ds


__all__ = ["FORMATS", "convert", "detect_format", "load", "save"]
