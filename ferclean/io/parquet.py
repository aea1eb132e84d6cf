"""ferclean's Parquet form: one image per row, in a single file or a folder of shards.

The form (fixed in ``docs/formats.md``, "Parquet"): columns ``row`` (int64, the image's
position in the original input, unique), ``image_id`` (string), ``split`` (string),
``label`` (int8, -1 unlabeled) and ``pixels`` (``fixed_size_binary(2304)``: the 48x48
image, row-major), plus ``synthetic`` (bool) only when some image is synthetic. The
schema's metadata key ``ferclean`` holds ``{"format": "ferclean-parquet", "version": 1,
"image_size": 48, "n_images": ..., "source": ...}``.

A folder of shards holds ``part-00000.parquet``, ``part-00001.parquet``, ... and
``_ferclean.json``; shard order, then row order within a shard, is the dataset's order.
Round trips are exact (pixels, labels, splits, ids, rows, synthetic flags).

pyarrow is an optional dependency (``pip install 'ferclean[dask]'``): this module imports
without it and says so when a Parquet file is read or written.
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._outputs import MARKER, dataset_inputs, output_dir, output_file
from ferclean._progress import Progress
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, UNLABELED, FaceDataset, empty_dropped
from ferclean.errors import (
    BadInputError,
    BadInputWarning,
    BadRecords,
    FercleanError,
    check_on_bad,
)

__all__ = [
    "PARQUET_COLUMNS",
    "PARQUET_SUFFIXES",
    "PIXELS_WIDTH",
    "SHARDS_FILE",
    "SHARD_FILES",
    "MissingDependencyError",
    "convert_parquet",
    "dataset_table",
    "is_parquet_folder",
    "iter_parquet",
    "parquet_checksum",
    "parquet_shards",
    "read_parquet",
    "read_shards_description",
    "shard_name",
    "shard_sizes",
    "table_dataset",
    "validate_parquet_table",
    "write_parquet",
    "write_parquet_file",
    "write_shards_description",
]

#: The columns of the form, in order (``synthetic`` follows only when some image is).
PARQUET_COLUMNS: tuple[str, ...] = ("row", "image_id", "split", "label", "pixels")
#: Bytes of one image in the ``pixels`` column.
PIXELS_WIDTH: int = IMAGE_SIZE * IMAGE_SIZE
#: File name suffixes of a single Parquet file.
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
#: The description file of a folder of shards.
SHARDS_FILE = "_ferclean.json"
FORMAT_VERSION = 1
_FILE_FORMAT = "ferclean-parquet"
_SHARDS_FORMAT = "ferclean-parquet-shards"
_META_KEY = b"ferclean"
_SHARD_NAME = re.compile(r"^part-(\d{5})\.parquet$")
# 8,192 images are 19 MB of pixels: a single file is read back in bounded steps.
_ROW_GROUP_SIZE = 8192
_INSTALL = "pip install 'ferclean[dask]'"


class MissingDependencyError(FercleanError, ImportError):
    """An optional dependency is missing; the message names the extra to install.

    Examples
    --------
    >>> issubclass(MissingDependencyError, ImportError)
    True
    """


def _arrow():
    """``(pyarrow, pyarrow.compute, pyarrow.parquet)``, or a clear error without them."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError(
            f"the Parquet form needs pyarrow, which is not installed: {_INSTALL}"
        ) from None
    return pa, pc, pq


def shard_name(index: int) -> str:
    """The file name of shard ``index`` in a folder of shards.

    Examples
    --------
    >>> shard_name(3)
    'part-00003.parquet'
    """
    return f"part-{index:05d}.parquet"


# ---------------------------------------------------------------------- writing
def _file_metadata(n_images: int, source: str | None) -> dict[bytes, bytes]:
    return {_META_KEY: json.dumps({"format": _FILE_FORMAT, "version": FORMAT_VERSION,
                                   "image_size": IMAGE_SIZE, "n_images": int(n_images),
                                   "source": source}).encode()}


def _schema(synthetic: bool):
    pa, _, _ = _arrow()
    fields = [("row", pa.int64()), ("image_id", pa.string()), ("split", pa.string()),
              ("label", pa.int8()), ("pixels", pa.binary(PIXELS_WIDTH))]
    if synthetic:
        fields.append(("synthetic", pa.bool_()))
    return pa.schema(fields)


def dataset_table(ds: FaceDataset, *, synthetic: bool | None = None):
    """A dataset as a ``pyarrow.Table`` of the Parquet form (without file metadata).

    Parameters
    ----------
    ds : FaceDataset
    synthetic : bool, default=None
        Include the ``synthetic`` column; ``None``: only if some image is synthetic.

    Examples
    --------
    >>> import numpy as np
    >>> t = dataset_table(FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[1, 2]))
    >>> t.column_names, t.num_rows
    (['row', 'image_id', 'split', 'label', 'pixels'], 2)
    """
    pa, _, _ = _arrow()
    n = len(ds)
    with_synthetic = bool(ds.synthetic.any()) if synthetic is None else synthetic
    flat = np.ascontiguousarray(ds.pixels).reshape(n, PIXELS_WIDTH)
    pixels = pa.FixedSizeBinaryArray.from_buffers(pa.binary(PIXELS_WIDTH), n,
                                                  [None, pa.py_buffer(flat)])
    splits = pa.DictionaryArray.from_arrays(pa.array(ds.splits, pa.int8()),
                                            pa.array(SPLITS)).cast(pa.string())
    columns = [pa.array(ds.rows, pa.int64()), pa.array(ds.ids.astype(object), pa.string()),
               splits, pa.array(ds.labels, pa.int8()), pixels]
    if with_synthetic:
        columns.append(pa.array(ds.synthetic, pa.bool_()))
    return pa.Table.from_arrays(columns, schema=_schema(with_synthetic))


def _write_table(table, path: Path, source: str | None) -> None:
    _, _, pq = _arrow()
    table = table.replace_schema_metadata(_file_metadata(table.num_rows, source))
    pq.write_table(table, path, row_group_size=_ROW_GROUP_SIZE)


class _ShardWriter:
    """Cuts a stream of tables into shards of ``shard_size`` rows in ``folder``.

    At most one shard's rows (and the table being added) are held at a time.
    """

    def __init__(self, folder: Path, shard_size: int | None, source: str | None) -> None:
        self.folder, self.shard_size, self.source = folder, shard_size, source
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.n_shards = 0
        self.n_images = 0
        self.schema = None

    def add(self, table) -> None:
        if self.schema is None:
            self.schema = table.schema
        while table.num_rows:
            room = (table.num_rows if self.shard_size is None
                    else self.shard_size - self.pending_rows)
            self.pending.append(table.slice(0, room))
            self.pending_rows += min(room, table.num_rows)
            table = table.slice(room)
            if self.shard_size is not None and self.pending_rows == self.shard_size:
                self._flush()

    def _flush(self) -> None:
        pa, _, _ = _arrow()
        table = pa.concat_tables(self.pending) if self.pending else self.schema.empty_table()
        _write_table(table, self.folder / shard_name(self.n_shards), self.source)
        self.n_shards += 1
        self.n_images += table.num_rows
        self.pending, self.pending_rows = [], 0

    def close(self) -> None:
        """Write the last shard (an empty one if nothing came) and ``_ferclean.json``."""
        if self.pending_rows or self.n_shards == 0:
            if self.schema is None:
                self.schema = _schema(False)
            self._flush()
        write_shards_description(self.folder, n_images=self.n_images, n_shards=self.n_shards,
                                 shard_size=self.shard_size if self.shard_size is not None
                                 else self.n_images, source=self.source)


def write_shards_description(folder: str | os.PathLike, *, n_images: int, n_shards: int,
                             shard_size: int, source: str | None) -> Path:
    """Write a folder's ``_ferclean.json`` (for engines that write shards themselves).

    ``shard_size`` is the most images a shard holds; shards may hold fewer.

    Examples
    --------
    >>> import tempfile
    >>> p = write_shards_description(tempfile.mkdtemp(), n_images=0, n_shards=0,
    ...                              shard_size=0, source=None)
    >>> json.loads(p.read_text())["format"]
    'ferclean-parquet-shards'
    """
    description = {"format": _SHARDS_FORMAT, "version": FORMAT_VERSION,
                   "n_images": int(n_images), "n_shards": int(n_shards),
                   "shard_size": int(shard_size), "source": source}
    path = Path(folder) / SHARDS_FILE
    path.write_text(json.dumps(description, indent=1) + "\n")
    return path


def write_parquet_file(table: Any, path: str | os.PathLike, *,
                       source: str | None = None) -> Path:
    """Write one table of the form (see :func:`dataset_table`) as a Parquet file, with the
    form's metadata; no output guard (for files inside an output folder being written).

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> t = dataset_table(FaceDataset(np.zeros((1, 48, 48), np.uint8)))
    >>> len(read_parquet(write_parquet_file(t, pathlib.Path(tempfile.mkdtemp()) / "a.pq")))
    1
    """
    _write_table(table, Path(path), source)
    return Path(path)


def _check_shard_size(shard_size: Any) -> int | None:
    if shard_size is None:
        return None
    if isinstance(shard_size, bool) or not isinstance(shard_size, (int, np.integer)) or (
            shard_size < 1):
        raise ValueError(f"shard_size must be a whole number of images, 1 or more; got "
                         f"{shard_size!r}")
    return int(shard_size)


def _is_file_path(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


#: What a folder of shards holds, to recognise one written before the output marker.
SHARD_FILES = ("part-*.parquet", SHARDS_FILE)


def write_parquet(
    ds: FaceDataset,
    path: str | os.PathLike,
    *,
    shard_size: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a dataset in the Parquet form, atomically: one file, or a folder of shards.

    Parameters
    ----------
    ds : FaceDataset
    path : path-like
        A ``.parquet`` (or ``.pq``) file, or a folder that receives ``part-00000.parquet``,
        ... and ``_ferclean.json``. Never the data ``ds`` was read from; an existing
        output is replaced only with ``overwrite=True`` (a folder only if ferclean wrote
        it; see :mod:`ferclean._outputs`).
    shard_size : int, default=None
        Images per shard (the last shard holds the rest). ``None``: one file for a
        ``.parquet`` path, one shard for a folder. A file path takes no ``shard_size``.
    overwrite : bool, default=False

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> out = write_parquet(ds, pathlib.Path(tempfile.mkdtemp()) / "shards", shard_size=100)
    >>> len(ds), len(parquet_shards(out)), read_parquet(out).equals(ds, ids=True)
    (410, 5, True)
    """
    _arrow()
    path = Path(path)
    shard_size = _check_shard_size(shard_size)
    inputs = dataset_inputs(ds)
    if _is_file_path(path):
        if shard_size is not None:
            raise ValueError(f"{path}: shards go in a folder; give a path without the "
                             f"{path.suffix} suffix, or no shard_size for one file")
        with output_file(path, inputs=inputs, overwrite=overwrite) as tmp:
            _write_table(dataset_table(ds), tmp, ds.source)
        return path
    with_synthetic = bool(ds.synthetic.any())
    with output_dir(path, what="ferclean parquet shards", inputs=inputs, overwrite=overwrite,
                    known=SHARD_FILES) as tmp:
        writer = _ShardWriter(tmp, shard_size, ds.source)
        step = shard_size or max(len(ds), 1)
        for start in range(0, len(ds), step):  # one shard's slice at a time
            writer.add(dataset_table(ds[start:start + step], synthetic=with_synthetic))
        if not len(ds):
            writer.schema = _schema(with_synthetic)
        writer.close()
    return path


# ---------------------------------------------------------------------- the files
def is_parquet_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder of Parquet shards: it holds ``_ferclean.json`` or
    ``*.parquet`` files, and no subfolders (an image folder has ``train/``, ``test/``).

    Examples
    --------
    >>> import tempfile
    >>> is_parquet_folder(tempfile.mkdtemp())
    False
    """
    try:
        entries = list(os.scandir(path))
    except OSError:
        return False
    if any(e.is_dir() for e in entries):
        return False
    return any(e.name == SHARDS_FILE or e.name.lower().endswith(".parquet") for e in entries)


def _shards_description(folder: Path) -> dict[str, Any] | None:
    file = folder / SHARDS_FILE
    if not file.exists():
        return None
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(str(file), None, f"cannot read as JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != _SHARDS_FORMAT:
        raise BadInputError(str(file), None, f"not a ferclean shard description (format "
                            f"{_SHARDS_FORMAT!r} expected)")
    if data.get("version") != FORMAT_VERSION:
        raise BadInputError(str(file), None, f"version {data.get('version')!r} is not one "
                            f"this ferclean reads ({FORMAT_VERSION}); upgrade ferclean")
    for key in ("n_images", "n_shards"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BadInputError(str(file), None, f"{key} must be a count; got {value!r}")
    return data


def read_shards_description(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``_ferclean.json`` of a folder of shards: ``n_images``, ``n_shards``,
    ``shard_size``, ``source``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> out = write_parquet(demo_dataset(n_faces=300), pathlib.Path(tempfile.mkdtemp()) / "s",
    ...                     shard_size=300)
    >>> read_shards_description(out)["n_shards"]
    2
    """
    description = _shards_description(Path(folder))
    if description is None:
        raise BadInputError(str(folder), None, f"no {SHARDS_FILE}: not a folder of shards "
                            "written by ferclean")
    return description


def parquet_shards(path: str | os.PathLike) -> list[Path]:
    """The Parquet files of ``path``, in dataset order: a single file, or a folder's shards.

    A folder must hold ``part-00000.parquet`` to ``part-<K-1>.parquet`` with no gap (and
    as many as its ``_ferclean.json`` says), and nothing else but ``_ferclean.json`` and
    ferclean's output marker.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    BadInputError
        A folder with a gap in its shards, a foreign file, a subfolder, no shards, or a
        ``_ferclean.json`` that disagrees.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> out = write_parquet(demo_dataset(n_faces=300), pathlib.Path(tempfile.mkdtemp()) / "s",
    ...                     shard_size=300)
    >>> [p.name for p in parquet_shards(out)]  # 410 images
    ['part-00000.parquet', 'part-00001.parquet']
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise BadInputError(str(path), None, f"cannot read: {_reason(exc)}") from None
    if not stat.S_ISDIR(mode):
        if not stat.S_ISREG(mode):
            raise BadInputError(str(path), None, "not a regular file, so not a Parquet file")
        return [path]
    folder = f"{path}{os.sep}" if not str(path).endswith(os.sep) else str(path)
    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        raise BadInputError(folder, None, f"cannot list: {_reason(exc)}") from None
    numbers = []
    for name in entries:
        match = _SHARD_NAME.match(name)
        if match and (path / name).is_file():
            numbers.append(int(match.group(1)))
        elif name not in (SHARDS_FILE, MARKER):
            what = "a subfolder" if (path / name).is_dir() else "a foreign file"
            raise BadInputError(folder, name, f"{what} in a folder of Parquet shards (it may "
                                "hold only part-NNNNN.parquet files and _ferclean.json)")
    description = _shards_description(path)
    if not numbers and description is None:
        raise BadInputError(folder, None, "holds no Parquet shards (part-00000.parquet, ...)")
    expected = description["n_shards"] if description is not None else len(numbers)
    missing = sorted(set(range(max(expected, len(numbers)))) - set(numbers))
    if missing:
        raise BadInputError(folder, shard_name(missing[0]),
                            f"missing: the shards have a gap (found {len(numbers)} of "
                            f"{expected}, part-00000 to {shard_name(expected - 1)})")
    if len(numbers) != expected:
        raise BadInputError(folder, shard_name(max(numbers)),
                            f"{SHARDS_FILE} lists {expected} shard(s) but the folder holds "
                            f"{len(numbers)}")
    return [path / shard_name(i) for i in range(len(numbers))]


def _reason(exc: OSError) -> str:
    return exc.strerror.lower() if exc.strerror else str(exc)


def _open(file: Path):
    """``(ParquetFile, its ferclean metadata or None)``; file-level errors raise."""
    pa, _, pq = _arrow()
    try:
        handle = pq.ParquetFile(file)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        if isinstance(exc, PermissionError):
            raise BadInputError(str(file), None, f"cannot read: {_reason(exc)}") from None
        raise BadInputError(str(file), None, f"not a Parquet file ({exc})") from None
    schema = handle.schema_arrow
    raw = (schema.metadata or {}).get(_META_KEY)
    meta = None
    if raw is not None:
        try:
            meta = json.loads(raw)
        except ValueError:
            raise BadInputError(str(file), None, "its ferclean metadata is not JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != _FILE_FORMAT:
            raise BadInputError(str(file), None, "its ferclean metadata names another format")
        if meta.get("version") != FORMAT_VERSION:
            raise BadInputError(str(file), None, f"version {meta.get('version')!r} is not one "
                                f"this ferclean reads ({FORMAT_VERSION}); upgrade ferclean")
        if meta.get("image_size", IMAGE_SIZE) != IMAGE_SIZE:
            raise BadInputError(str(file), None, f"images of size {meta.get('image_size')!r}; "
                                f"ferclean reads {IMAGE_SIZE}x{IMAGE_SIZE}")
        if meta.get("n_images") not in (None, handle.metadata.num_rows):
            raise BadInputError(str(file), None, f"holds {handle.metadata.num_rows} images but "
                                f"was written with {meta['n_images']} (truncated?)")
    _check_schema(schema, file)
    return handle, meta


# ---------------------------------------------------------------------- validation
def _check_schema(schema, file: Path | str, required: tuple[str, ...] = PARQUET_COLUMNS) -> None:
    """File-level problems: a missing column, or a column of the wrong type."""
    pa, _, _ = _arrow()
    names = schema.names
    missing = [c for c in required if c not in names]
    if missing:
        raise BadInputError(str(file), None, f"missing column(s) {', '.join(missing)} (a "
                            f"ferclean Parquet file has {', '.join(PARQUET_COLUMNS)})")

    def text(t) -> bool:
        if pa.types.is_dictionary(t):
            t = t.value_type
        return pa.types.is_string(t) or pa.types.is_large_string(t)

    def uint8_list(t) -> bool:
        return ((pa.types.is_list(t) or pa.types.is_large_list(t)
                 or pa.types.is_fixed_size_list(t)) and pa.types.is_uint8(t.value_type))

    expect = {"row": (pa.types.is_integer, "an integer"),
              "image_id": (text, "a string"),
              "split": (text, "a string"),
              "label": (pa.types.is_integer, "an integer"),
              "pixels": (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t)
                         or pa.types.is_fixed_size_binary(t) or uint8_list(t),
                         "fixed_size_binary(2304)"),
              "synthetic": (pa.types.is_boolean, "bool")}
    for name, (ok, want) in expect.items():
        if name in names and not ok(schema.field(name).type):
            raise BadInputError(str(file), None, f"column {name} is {schema.field(name).type}; "
                                f"expected {want}")
    if "pixels" not in names:
        return
    pixels = schema.field("pixels").type
    width = (pixels.byte_width if pa.types.is_fixed_size_binary(pixels)
             else pixels.list_size if pa.types.is_fixed_size_list(pixels) else PIXELS_WIDTH)
    if width != PIXELS_WIDTH:
        raise BadInputError(str(file), None, f"column pixels holds {width} bytes per image; "
                            f"expected {PIXELS_WIDTH} (a {IMAGE_SIZE}x{IMAGE_SIZE} image)")


class _RowSet:
    """The ``row`` values met so far, sorted, to refuse one met twice across files."""

    def __init__(self) -> None:
        self.values = np.zeros(0, np.int64)

    def seen(self, rows: np.ndarray) -> np.ndarray:
        """Mask of ``rows`` met before (in earlier calls)."""
        if not len(self.values) or not len(rows):
            return np.zeros(len(rows), bool)
        at = np.searchsorted(self.values, rows)
        return self.values[np.minimum(at, len(self.values) - 1)] == rows

    def add(self, rows: np.ndarray) -> None:
        rows = np.sort(rows)
        self.values = np.insert(self.values, np.searchsorted(self.values, rows), rows)


def _as_numpy(column, fill) -> tuple[np.ndarray, np.ndarray]:
    """``(values with nulls filled, null mask)`` of an Arrow column."""
    _, pc, _ = _arrow()
    nulls = pc.is_null(column).to_numpy(zero_copy_only=False)
    return pc.fill_null(column, fill).to_numpy(zero_copy_only=False), nulls


def _problems(table, rows_seen: _RowSet | None) -> tuple[np.ndarray, list[str]]:
    """The bad rows of a table (indices into it) and the first problem of each, in order.

    Checks, per row: ``row`` present and not negative, ``image_id`` present, ``split``
    one of the three, ``label`` in -1..6, ``pixels`` present and 2,304 bytes, ``synthetic``
    present; then ``row`` values unique among the good rows (against ``rows_seen`` too).
    """
    pa, pc, _ = _arrow()
    n = table.num_rows
    reasons = np.full(n, None, dtype=object)

    def flag(mask: np.ndarray, why) -> None:
        for i in np.flatnonzero(mask & (reasons == None)):  # noqa: E711 (elementwise)
            reasons[i] = why(int(i))

    rows, rows_null = _as_numpy(table.column("row").cast(pa.int64()), 0)
    flag(rows_null, lambda i: "row is missing (null)")
    flag(rows < 0, lambda i: f"row {rows[i]} is negative (an input position is 0 or more)")
    present = set(table.column_names)  # a projection may leave columns out
    if "image_id" in present:
        flag(pc.is_null(table.column("image_id")).to_numpy(zero_copy_only=False),
             lambda i: "image_id is missing (null)")
    if "split" in present:
        split = table.column("split")
        split_code = pc.index_in(split.cast(pa.string()) if pa.types.is_dictionary(split.type)
                                 else split, value_set=pa.array(SPLITS))
        flag(pc.is_null(split).to_numpy(zero_copy_only=False),
             lambda i: "split is missing (null)")
        flag(pc.is_null(split_code).to_numpy(zero_copy_only=False),
             lambda i: f"split {split[i].as_py()!r} is not one of {', '.join(SPLITS)}")
    if "label" in present:
        labels, labels_null = _as_numpy(table.column("label").cast(pa.int64()), 0)
        flag(labels_null, lambda i: "label is missing (null)")
        flag((labels < UNLABELED) | (labels >= len(EMOTIONS)),
             lambda i: f"label {labels[i]} is not in -1..{len(EMOTIONS) - 1}")
    pixels = table.column("pixels") if "pixels" in table.column_names else None
    if pixels is not None:
        flag(pc.is_null(pixels).to_numpy(zero_copy_only=False),
             lambda i: "pixels are missing (null)")
    if pixels is not None and not pa.types.is_fixed_size_binary(pixels.type) and not (
            pa.types.is_fixed_size_list(pixels.type)):
        length = (pc.list_value_length(pixels) if pa.types.is_list(pixels.type)
                  or pa.types.is_large_list(pixels.type) else pc.binary_length(pixels))
        width = pc.fill_null(length, PIXELS_WIDTH).to_numpy(zero_copy_only=False)
        flag(width != PIXELS_WIDTH,
             lambda i: f"pixels hold {width[i]} bytes; expected {PIXELS_WIDTH} "
                       f"(a {IMAGE_SIZE}x{IMAGE_SIZE} image)")
    if "synthetic" in table.column_names:
        flag(pc.is_null(table.column("synthetic")).to_numpy(zero_copy_only=False),
             lambda i: "synthetic is missing (null)")
    good = np.flatnonzero(reasons == None)  # noqa: E711 (elementwise)
    # duplicates among the good rows, the later one bad: stable sort keeps file order
    order = good[np.argsort(rows[good], kind="stable")]
    again = np.zeros(n, bool)
    again[order[1:][rows[order[1:]] == rows[order[:-1]]]] = True
    if rows_seen is not None:
        again[good] |= rows_seen.seen(rows[good])
    flag(again, lambda i: f"row {rows[i]} is not unique (an earlier image has the same row)")
    bad = np.flatnonzero(reasons != None)  # noqa: E711 (elementwise)
    return bad, [reasons[i] for i in bad]


def validate_parquet_table(
    table: Any,
    file: str | os.PathLike,
    *,
    on_bad: str = "raise",
    offset: int = 0,
    bad: BadRecords | None = None,
    rows_seen: Any = None,
    columns: tuple[str, ...] | list[str] | None = None,
):
    """Check a table of the Parquet form (a file, or a part of one); return its good rows.

    The one validation every reader of the form uses (this module's readers, the Dask
    engines): the columns must be there with usable types, and each row needs a ``row``
    (0 or more, unique), an ``image_id``, a ``split`` of ``Training``, ``PublicTest``,
    ``PrivateTest``, a ``label`` in -1..6 and 2,304 bytes of ``pixels``.

    Parameters
    ----------
    table : pyarrow.Table or pandas.DataFrame
        A pandas frame (a Dask partition) is converted first.
    file : path-like
        The file the table comes from, for messages.
    on_bad : {"raise", "skip", "report"}, default="raise"
        ``raise``: a :class:`~ferclean.errors.BadInputError` naming the file, the row and
        the problem, at the first bad row. ``skip``/``report``: bad rows are left out (and
        recorded in ``bad``; warning is the caller's, once it finishes).
    offset : int, default=0
        Index of the table's first row in its file (for a part of a file), so messages
        name the row in the file.
    bad : BadRecords, default=None
        Where skipped rows are recorded.
    rows_seen : optional
        ``row`` values of earlier tables of the same dataset (internal), so a value met
        in another shard counts as a duplicate too.
    columns : sequence of str, default=None
        The columns the table was read with, when only some were (``row`` among them):
        only those are required and checked. ``None``: the whole form.

    Returns
    -------
    pyarrow.Table
        ``table`` itself when every row is good, else its good rows.

    Raises
    ------
    BadInputError
        A missing column or a column of the wrong type (always), or a bad row under
        ``on_bad="raise"``.

    Examples
    --------
    >>> import numpy as np
    >>> table = dataset_table(FaceDataset(np.zeros((2, 48, 48), np.uint8)))
    >>> validate_parquet_table(table, "x.parquet").num_rows
    2
    >>> import pyarrow as pa
    >>> broken = table.set_column(3, "label", pa.array([0, 9], pa.int8()))
    >>> validate_parquet_table(broken, "x.parquet")
    Traceback (most recent call last):
    ...
    ferclean.errors.BadInputError: x.parquet: row 1: label 9 is not in -1..6
    """
    pa, _, _ = _arrow()
    check_on_bad(on_bad)
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    required = PARQUET_COLUMNS if columns is None else tuple(
        c for c in PARQUET_COLUMNS if c in columns)
    if "row" not in required:
        raise ValueError("validate_parquet_table needs the row column among the columns read")
    _check_schema(table.schema, file, required)
    where, reasons = _problems(table, rows_seen)
    if len(where) and on_bad == "raise":
        raise BadInputError(str(file), f"row {offset + int(where[0])}", reasons[0])
    for i, why in zip(where.tolist(), reasons, strict=True):
        if bad is not None:
            bad.add(f"row {offset + i}", why)
    if isinstance(rows_seen, _RowSet):
        kept = np.ones(table.num_rows, bool)
        kept[where] = False
        rows_seen.add(table.column("row").cast(pa.int64()).to_numpy(
            zero_copy_only=False)[kept])
    if not len(where):
        return table
    kept = np.ones(table.num_rows, bool)
    kept[where] = False
    return table.filter(pa.array(kept))


# ---------------------------------------------------------------------- reading
def _pixels_into(column, out: np.ndarray) -> None:
    """Copy a valid ``pixels`` column (no nulls, every image 2,304 bytes) into ``out``."""
    pa, _, _ = _arrow()
    start = 0
    for chunk in column.chunks:
        n = len(chunk)
        if pa.types.is_fixed_size_binary(chunk.type):
            data = np.frombuffer(chunk.buffers()[1], np.uint8, count=n * PIXELS_WIDTH,
                                 offset=chunk.offset * PIXELS_WIDTH)
        elif pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type):
            fixed = chunk.cast(pa.binary(PIXELS_WIDTH))
            data = np.frombuffer(fixed.buffers()[1], np.uint8, count=n * PIXELS_WIDTH,
                                 offset=fixed.offset * PIXELS_WIDTH)
        else:  # a list of uint8
            data = chunk.flatten().to_numpy(zero_copy_only=False)
        out[start:start + n] = data.reshape(n, PIXELS_WIDTH)
        start += n


def _table_arrays(table, pixels: np.ndarray) -> dict[str, Any]:
    """A validated table's columns as numpy arrays; its pixels go into ``pixels``."""
    pa, pc, _ = _arrow()
    n = table.num_rows
    _pixels_into(table.column("pixels"), pixels)
    split = table.column("split")
    if pa.types.is_dictionary(split.type):
        split = split.cast(pa.string())
    codes = pc.index_in(split, value_set=pa.array(SPLITS)).to_numpy(zero_copy_only=False)
    image_id = table.column("image_id")
    if pa.types.is_dictionary(image_id.type):
        image_id = image_id.cast(pa.string())
    return {
        "labels": table.column("label").to_numpy(zero_copy_only=False).astype(np.int8),
        "splits": np.asarray(codes, np.int8),
        "ids": np.asarray(image_id.to_numpy(zero_copy_only=False), dtype=str).reshape(n),
        "rows": table.column("row").to_numpy(zero_copy_only=False).astype(np.int64),
        "synthetic": (table.column("synthetic").to_numpy(zero_copy_only=False).astype(bool)
                      if "synthetic" in table.column_names else np.zeros(n, bool)),
    }


def table_dataset(table: Any, *, source: str | None = None,
                  dropped: pd.DataFrame | None = None) -> FaceDataset:
    """A validated table of the Parquet form (see :func:`validate_parquet_table`) as a
    :class:`FaceDataset`.

    Examples
    --------
    >>> import numpy as np
    >>> ds = FaceDataset(np.ones((2, 48, 48), np.uint8), labels=[1, 2])
    >>> table_dataset(dataset_table(ds)).equals(ds, ids=True)
    True
    """
    pixels = np.empty((table.num_rows, PIXELS_WIDTH), np.uint8)
    arrays = _table_arrays(table, pixels)
    return FaceDataset(pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE), source=source,
                       dropped=dropped, **arrays)


def _open_all(path: Path) -> list[tuple[Path, Any]]:
    """Every file of ``path`` opened (file-level checks done), and the folder's total
    checked against its ``_ferclean.json``."""
    files = parquet_shards(path)
    opened = [(file, _open(file)[0]) for file in files]
    if path.is_dir():
        description = _shards_description(path)
        total = sum(h.metadata.num_rows for _, h in opened)
        if description is not None and description["n_images"] != total:
            raise BadInputError(f"{path}{os.sep}", SHARDS_FILE,
                                f"lists {description['n_images']} images but the shards hold "
                                f"{total} (a shard was replaced or truncated?)")
    return opened


def _checked_files(path: Path) -> list[tuple[Path, int, list[str]]]:
    """``(file, images, column names)`` of every file of ``path``, after the file-level
    checks. The handles are dropped: an open ``ParquetFile`` keeps what it read (81 MB
    for FER-2013's 8 shards), so each file is opened again where it is read."""
    return [(file, h.metadata.num_rows, h.schema_arrow.names) for file, h in _open_all(path)]


def _read_error(file: Path, exc: Exception) -> BadInputError:
    return BadInputError(str(file), None, f"cannot read as Parquet: {exc}")


def _read_file(file: Path):
    """The whole table of one file (its handle dropped once read)."""
    pa, _, pq = _arrow()
    try:
        return pq.ParquetFile(file).read()
    except (pa.ArrowException, OSError) as exc:
        raise _read_error(file, exc) from None


def _batches(file: Path, batch_size: int, columns: list[str] | None = None) -> Iterator[Any]:
    """One file's rows as tables of at most ``batch_size`` rows."""
    pa, _, pq = _arrow()
    handle = pq.ParquetFile(file)
    batches = handle.iter_batches(batch_size=batch_size, columns=columns)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise _read_error(file, exc) from None
        yield pa.Table.from_batches([batch])


def shard_sizes(path: str | os.PathLike) -> list[int]:
    """Images per file of ``path`` (from the files' footers; nothing else is read), after
    the checks of whole files: names, gaps, columns, ``_ferclean.json``'s totals.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> out = write_parquet(demo_dataset(n_faces=300), pathlib.Path(tempfile.mkdtemp()) / "s",
    ...                     shard_size=300)
    >>> shard_sizes(out)
    [300, 110]
    """
    _arrow()
    return [n for _, n, _ in _checked_files(Path(path))]


def _finish_bad(records: list[BadRecords], on_bad: str, source: str) -> pd.DataFrame:
    frames = [r.frame() for r in records if len(r)]
    if not frames:
        return empty_dropped()
    dropped = pd.concat(frames, ignore_index=True)
    if on_bad == "report":
        shown = "; ".join(f"{Path(s).name}: {loc}: {why}" for s, loc, why in
                          dropped.head(5).itertuples(index=False))
        more = f" (and {len(dropped) - 5} more)" if len(dropped) > 5 else ""
        warnings.warn(f"{source}: dropped {len(dropped)} bad record(s): {shown}{more}",
                      BadInputWarning, stacklevel=3)
    return dropped


def read_parquet(
    path: str | os.PathLike,
    *,
    on_bad: str = "raise",
    progress: bool = False,
) -> FaceDataset:
    """Read the Parquet form: a single file, or a folder of shards (in shard order).

    Parameters
    ----------
    path : path-like
        A ``.parquet`` file or a folder of ``part-NNNNN.parquet`` shards.
    on_bad : {"raise", "skip", "report"}, default="raise"
        A bad row (see :func:`validate_parquet_table`) raises, naming the file and the
        row, or is dropped and listed in ``dataset.dropped`` (``report`` also warns).
        Problems with a whole file (not Parquet, a missing column, a shard folder with a
        gap or a foreign file) always raise.
    progress : bool, default=False
        Show a progress bar (one step per file) on stderr.

    Returns
    -------
    FaceDataset
        ``source`` is ``str(path)``, as for every reader (the source recorded in the
        file is in its metadata).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> p = write_parquet(ds, pathlib.Path(tempfile.mkdtemp()) / "demo.parquet")
    >>> back = read_parquet(p)
    >>> back.equals(ds, ids=True), bool((back.rows == ds.rows).all())
    (True, True)
    """
    check_on_bad(on_bad)
    _arrow()  # before anything else: a missing pyarrow is the first thing to fix
    path = Path(path)
    files = _checked_files(path)
    total = sum(n for _, n, _ in files)
    pixels = np.empty((total, PIXELS_WIDTH), np.uint8)  # filled file by file: no 2nd copy
    parts: list[dict[str, Any]] = []
    records: list[BadRecords] = []
    rows_seen = _RowSet()
    filled = 0
    with Progress(len(files), f"read {path.name}", enabled=progress) as bar:
        for file, _, _ in files:
            table = _read_file(file)
            bad = BadRecords(str(file), "raise" if on_bad == "raise" else "skip")
            records.append(bad)
            good = validate_parquet_table(table, file, on_bad=on_bad, bad=bad,
                                          rows_seen=rows_seen)
            del table
            parts.append(_table_arrays(good, pixels[filled:filled + good.num_rows]))
            filled += good.num_rows
            bar.update(1)
    dropped = _finish_bad(records, on_bad, str(path))
    arrays = {key: np.concatenate([p[key] for p in parts]) if parts else None
              for key in ("labels", "splits", "ids", "rows", "synthetic")}
    return FaceDataset(pixels[:filled].reshape(filled, IMAGE_SIZE, IMAGE_SIZE),
                       source=str(path), dropped=dropped, **arrays)


def iter_parquet(path: str | os.PathLike, *, on_bad: str = "raise",
                 columns: list[str] | None = None,
                 batch_size: int = _ROW_GROUP_SIZE) -> Iterator[tuple[Path, Any]]:
    """Validated batches of the Parquet form, file by file: ``(file, pyarrow.Table)``.

    Memory stays bounded by ``batch_size`` rows whatever the size of the files. Bad rows
    raise (or are left out under ``skip``/``report``; this generator does not warn).
    ``columns`` restricts what is read (``row`` is read too, for the checks; the
    validation covers the columns read, and the others are not read).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> p = write_parquet(demo_dataset(n_faces=300), pathlib.Path(tempfile.mkdtemp()) / "s",
    ...                   shard_size=150)
    >>> sum(t.num_rows for _, t in iter_parquet(p, batch_size=64)) == len(read_parquet(p))
    True
    """
    _arrow()
    check_on_bad(on_bad)
    rows_seen = _RowSet()
    for file, _, names in _checked_files(Path(path)):
        read = None if columns is None else [c for c in names if c in {"row", *columns}]
        offset = 0
        for table in _batches(file, batch_size, read):
            n = table.num_rows
            bad = BadRecords(str(file), "raise" if on_bad == "raise" else "skip")
            good = validate_parquet_table(table, file, on_bad=on_bad, offset=offset, bad=bad,
                                          rows_seen=rows_seen, columns=read)
            offset += n
            yield file, (good.select(list(columns)) if columns is not None else good)


def parquet_checksum(path: str | os.PathLike) -> str:
    """:meth:`FaceDataset.checksum` of the Parquet data at ``path``, streamed.

    Equal to ``read_parquet(path).checksum()`` while holding one batch of images at a
    time: the pixels of every file in order, then the labels and the splits (which is the
    checksum's definition). A bad row raises.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> p = write_parquet(ds, pathlib.Path(tempfile.mkdtemp()) / "s", shard_size=100)
    >>> parquet_checksum(p) == ds.checksum()
    True
    """
    import hashlib

    path = Path(path)
    n = sum(n for _, n, _ in _checked_files(path))
    digest = hashlib.sha256()
    digest.update(f"ferclean-v1:{n}:".encode())
    labels, splits = [], []
    for _, table in iter_parquet(path):
        buffer = np.empty((table.num_rows, PIXELS_WIDTH), np.uint8)
        arrays = _table_arrays(table, buffer)
        digest.update(buffer)  # the array's own bytes, no copy
        labels.append(arrays["labels"])
        splits.append(arrays["splits"])
    for part in labels:
        digest.update(part.tobytes())
    for part in splits:
        digest.update(part.tobytes())
    return digest.hexdigest()


def _canonical(table, with_synthetic: bool):
    """A validated table cast to the form's exact schema (extra columns left out)."""
    pa, _, _ = _arrow()
    pixels = table.column("pixels")
    if not pa.types.is_fixed_size_binary(pixels.type):
        flat = np.empty((table.num_rows, PIXELS_WIDTH), np.uint8)
        _pixels_into(pixels, flat)
        pixels = pa.FixedSizeBinaryArray.from_buffers(pa.binary(PIXELS_WIDTH), len(flat),
                                                      [None, pa.py_buffer(flat)])
    columns = [table.column("row").cast(pa.int64()),
               table.column("image_id").cast(pa.string()),
               table.column("split").cast(pa.string()),
               table.column("label").cast(pa.int8()), pixels]
    if with_synthetic:
        columns.append(table.column("synthetic") if "synthetic" in table.column_names
                       else pa.array(np.zeros(table.num_rows, bool)))
    return pa.Table.from_arrays(columns, schema=_schema(with_synthetic))


def convert_parquet(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    shard_size: int | None = None,
    on_bad: str = "raise",
    overwrite: bool = False,
    progress: bool = False,
) -> int:
    """Re-shard Parquet data into a folder of shards, streaming; returns the images written.

    Memory stays bounded by one shard (plus one batch read), whatever the size of
    ``src``; ``dst`` is written atomically through the output guard.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> src = write_parquet(demo_dataset(n_faces=300), d / "one.parquet")
    >>> convert_parquet(src, d / "shards", shard_size=128) == len(read_parquet(src))
    True
    >>> len(parquet_shards(d / "shards"))  # 410 images: 128 + 128 + 128 + 26
    4
    """
    check_on_bad(on_bad)
    _arrow()
    src, dst = Path(src), Path(dst)
    shard_size = _check_shard_size(shard_size)
    if _is_file_path(dst):
        raise ValueError(f"{dst}: convert_parquet writes a folder of shards; give a path "
                         f"without the {dst.suffix} suffix")
    files = _checked_files(src)  # file-level problems raise before anything is written
    with_synthetic = any("synthetic" in names for _, _, names in files)
    records: dict[Path, BadRecords] = {}
    with output_dir(dst, what="ferclean parquet shards", inputs=[src], overwrite=overwrite,
                    known=SHARD_FILES) as tmp:
        writer = _ShardWriter(tmp, shard_size, str(src))
        writer.schema = _schema(with_synthetic)
        total = sum(n for _, n, _ in files)
        rows_seen = _RowSet()
        with Progress(total, f"write {dst.name}", enabled=progress) as bar:
            for file, _, _ in files:
                offset = 0
                bad = records.setdefault(file, BadRecords(
                    str(file), "raise" if on_bad == "raise" else "skip"))
                for table in _batches(file, _ROW_GROUP_SIZE):
                    good = validate_parquet_table(table, file, on_bad=on_bad, offset=offset,
                                                  bad=bad, rows_seen=rows_seen)
                    offset += table.num_rows
                    writer.add(_canonical(good, with_synthetic))
                    bar.update(table.num_rows)
        writer.close()
    _finish_bad(list(records.values()), on_bad, str(src))
    return writer.n_images
