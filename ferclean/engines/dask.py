"""The audit on Dask: every auditor over Parquet shards, partition by partition.

``ferclean.audit("shards/", engine="dask")`` (CLI: ``ferclean audit shards/ --dask local``
or ``--dask tcp://scheduler:8786``) runs the auditors the in-memory engine runs over
ferclean's Parquet form (:mod:`ferclean.io.parquet`: a ``.parquet`` file or a folder of
shards) and returns the same :class:`~ferclean.findings.AuditResult`: the same findings,
row for row, and the same ``summary.json``, plus an ``engine`` entry. One partition is
one Parquet row group (8,192 images in the files ferclean writes; ``partition_size``
packs or cuts them), so a worker holds a few partitions' pixels at a time, whatever the
number of images.

This module only computes what the auditors need from the pixels, in four stages, and
hands it to them in a :class:`~ferclean.auditors.context.SuppliedContext`; the findings
are built by the auditors' own code, exactly as in memory.

1. **Hash** every partition: each image's content hash
   (:func:`~ferclean.similarity.exact.content_hash`), its split and label, and a seeded
   sampling key. A shuffle by hash keeps the images whose hash repeats (with their row,
   id, split and label: the only per-image data that reach the client); class counts are
   summed over partitions; a shuffle by ``row`` checks that rows are unique across
   shards; the outlier sample is the ``outlier_sample`` images of smallest key.
2. **Verify and fit**: the candidates' pixels, shuffled by hash, are grouped byte for
   byte (exact groups, as in memory); the sample's pixels fit the face model
   (:func:`~ferclean.auditors.outliers.fit_face_model`) in one task.
3. **Near duplicates**: :func:`~ferclean.engines.dask_near.dask_near_pairs`, the
   multi-index Hamming search as a bucket shuffle, verified on the pixels.
4. **Score and look up**: every partition is scored with the face model
   (:meth:`~ferclean.auditors.outliers.FaceModel.score`); the flagged images come back
   with their features. The metadata of the near pairs' images and of the images of
   under-represented classes is looked up in a pass that reads no pixels.

What reaches the client is the metadata (row, id, split, label) of the images the
findings involve (copies, flagged images, the images of under-represented classes),
never pixels; the outlier sample's pixels meet in one worker task. Only when the label
auditor gets out-of-sample probabilities or FER+ votes (``pred_probs``, ``ferplus``:
arrays over every image, in memory anyway) does the metadata of every image come back,
since those are matched to images by id and row.

Exact and sampled
-----------------
Exact duplicates, label conflicts, cross-split leaks, near duplicates, label issues and
class imbalance equal the in-memory findings exactly. The outliers' face model is fitted
on a seeded sample of ``outlier_sample`` images (default 20,000): when that covers the
dataset the model, the scores and the findings equal the in-memory ones (every image's
features and neighbour distances are computed row by row, so a partition gives the
numbers the whole array gives); with fewer, it is the model of the sample (its robust
scales, its reference faces, its ``contamination`` cut), and the flagged set agrees with
the in-memory one only approximately. The sample is drawn by a key hashed from each
image's content, id and ``random_state``, so it does not depend on the order or the
sharding of the data.

Not on Dask: ``OutlierAuditor(method="mean_iqr")`` (its quartiles need every mean
grey level; use ``face_model``, the default) and ``on_bad`` other than ``"raise"``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._progress import Progress
from ferclean.auditors.context import (
    ImageMetadata,
    SuppliedContext,
    class_counts,
    intermediate_key,
)
from ferclean.auditors.imbalance import imbalance_table
from ferclean.auditors.outliers import FEATURES, FaceModel, FaceScores, fit_face_model
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, FaceDataset
from ferclean.errors import BadInputError
from ferclean.similarity.exact import DuplicateGroups, content_hash, group_ids_from_labels

__all__ = ["DEFAULT_OUTLIER_SAMPLE", "audit_context", "image_frame"]

#: Images the outliers' face model is fitted on by default.
DEFAULT_OUTLIER_SAMPLE = 20_000
_PIXEL_BYTES = IMAGE_SIZE * IMAGE_SIZE
_META = ("position", "row", "image_id", "split", "label")
_WIDTH = len(EMOTIONS) + 1  # class-count cells per split (unlabelled last)
_STAGES = 4
_LOG = logging.getLogger(__name__)


def _dask() -> tuple[Any, Any, Any]:
    """``(dask, dask.dataframe, distributed)``, or a clear error naming the extra."""
    from ferclean.engines._cluster import require_dask, require_distributed

    distributed = require_distributed("engine='dask'")
    return (*require_dask("engine='dask'"), distributed)


# ---------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class _Piece:
    """One partition: consecutive rows of one file, read as whole row groups then cut,
    and where its images sit in the dataset."""

    file: str
    row_groups: tuple[int, ...]
    skip: int  # rows of the first row group before the partition's first image
    offset: int  # index of its first image in its file (for messages)
    start: int  # position of its first image in the dataset
    n: int


def _pieces(path: Path, partition_size: int | None = None) -> list[_Piece]:
    """The partitions of Parquet data, in dataset order, after the file-level checks.

    One per row group by default (8,192 images in files ferclean writes); with
    ``partition_size``, consecutive row groups of a file packed up to that many images,
    and a larger row group cut into parts of that size.
    """
    from ferclean.io.parquet import _open_all

    pieces: list[_Piece] = []
    start = 0
    for file, handle in _open_all(path):
        meta = handle.metadata
        sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        close = getattr(handle, "close", None)
        if close is not None:
            close()
        offset, group = 0, 0
        while group < len(sizes):
            if not sizes[group]:
                group += 1
                continue
            limit = partition_size or sizes[group]
            if sizes[group] >= limit:  # one row group, cut into parts of ``limit``
                for skip in range(0, sizes[group], limit):
                    n = min(limit, sizes[group] - skip)
                    pieces.append(_Piece(str(file), (group,), skip, offset, start, n))
                    offset, start = offset + n, start + n
                group += 1
                continue
            first, n = group, 0  # row groups packed up to ``limit`` images
            while group < len(sizes) and n + sizes[group] <= limit:
                n += sizes[group]
                group += 1
            pieces.append(_Piece(str(file), tuple(range(first, group)), 0, offset, start, n))
            offset, start = offset + n, start + n
    return pieces


def _read(piece: _Piece, columns: Sequence[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(piece.file)
    try:
        table = handle.read_row_groups(list(piece.row_groups), columns=columns)
    finally:
        handle.close()
    return table.slice(piece.skip, piece.n)


def _images(piece: _Piece) -> FaceDataset:
    """A partition's images, validated as every reader of the form validates them."""
    from ferclean.io.parquet import table_dataset, validate_parquet_table

    table = validate_parquet_table(_read(piece), piece.file, offset=piece.offset)
    return table_dataset(table, source=piece.file)


def _binary() -> Any:
    import pyarrow as pa

    return pd.ArrowDtype(pa.binary())


def _pixel_column(pixels: np.ndarray) -> Any:
    """(n, 48, 48) uint8 as an Arrow ``binary`` column (what stages pass pixels as: a
    column of bytes objects would be read as strings by dask)."""
    import pyarrow as pa

    flat = np.ascontiguousarray(pixels, np.uint8).reshape(len(pixels), _PIXEL_BYTES)
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(_PIXEL_BYTES), len(flat),
                                                 [None, pa.py_buffer(flat)])
    return pd.array(fixed.cast(pa.binary()), dtype=_binary())


def _pixels(column: pd.Series) -> np.ndarray:
    """The images of an Arrow ``binary`` (or bytes) column, shape (n, 48, 48)."""
    import pyarrow as pa

    n = len(column)
    values = pa.array(column.array) if isinstance(column.dtype, pd.ArrowDtype) else pa.array(
        column.to_numpy(object), pa.binary())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    fixed = values.cast(pa.binary(_PIXEL_BYTES))
    data = np.frombuffer(fixed.buffers()[1], np.uint8, count=n * _PIXEL_BYTES,
                         offset=fixed.offset * _PIXEL_BYTES)
    return data.reshape(n, IMAGE_SIZE, IMAGE_SIZE)


def _metadata_frame(ds: FaceDataset | None, start: int) -> pd.DataFrame:
    n = 0 if ds is None else len(ds)
    if ds is None:
        rows, ids = np.zeros(0, np.int64), np.zeros(0, object)
        splits, labels = np.zeros(0, np.int8), np.zeros(0, np.int8)
    else:
        rows, ids, splits, labels = ds.rows, ds.ids.astype(object), ds.splits, ds.labels
    return pd.DataFrame({
        "position": np.arange(start, start + n, dtype=np.int64),
        "row": np.asarray(rows, np.int64),
        "image_id": pd.array(ids, dtype="str"),
        "split": np.asarray(splits, np.int8),
        "label": np.asarray(labels, np.int8),
    })


def _image_piece(piece: _Piece | None) -> pd.DataFrame:
    """A partition of :func:`image_frame`: the Parquet form's columns, ``position``
    first, ``split`` as its name (the near search reads ``row`` and ``pixels``)."""
    ds = None if piece is None else _images(piece)
    frame = _metadata_frame(ds, 0 if piece is None else piece.start)
    frame["split"] = pd.array(np.asarray(SPLITS, dtype=object)[frame["split"].to_numpy()],
                              dtype="str")
    frame["pixels"] = _pixel_column(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
                                    if ds is None else ds.pixels)
    return frame


def image_frame(path: str | os.PathLike) -> Any:
    """Parquet data as a Dask DataFrame: one partition per row group, in dataset order.

    Columns ``position`` (the image's place in the dataset), ``row``, ``image_id``,
    ``split``, ``label`` and ``pixels`` (Arrow binary, 2,304 bytes). Every partition is
    validated when it is read (:func:`ferclean.io.parquet.validate_parquet_table`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.io.parquet import write_parquet
    >>> shards = write_parquet(demo_dataset(n_faces=300),
    ...                        pathlib.Path(tempfile.mkdtemp()) / "s", shard_size=150)
    >>> frame = image_frame(shards)
    >>> frame.npartitions, list(frame.columns)[:3]
    (3, ['position', 'row', 'image_id'])
    """
    _, dd, _ = _dask()
    pieces = _pieces(Path(path))
    if not pieces:
        raise BadInputError(str(path), None, "holds no images")
    return dd.from_map(_image_piece, pieces, meta=_image_piece(None), enforce_metadata=False)


# ---------------------------------------------------------------------- stage 1: hash
def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed bijection that scatters nearby keys."""
    z = np.asarray(values, np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _sample_keys(hashes: np.ndarray, ids: np.ndarray, seed: int) -> np.ndarray:
    """A seeded key per image from its content and id: the sample is the smallest keys,
    whatever the images' order or sharding."""
    id_hash = pd.util.hash_array(np.asarray(ids, dtype=object))
    with np.errstate(over="ignore"):
        return _mix(hashes ^ _mix(id_hash ^ _mix(np.uint64(seed % 2**64))))


def _hash_piece(piece: _Piece | None, seed: int = 0) -> pd.DataFrame:
    ds = None if piece is None else _images(piece)
    frame = _metadata_frame(ds, 0 if piece is None else piece.start)
    hashes = content_hash(ds.pixels) if ds is not None else np.zeros(0, np.uint64)
    frame["hash"] = hashes
    frame["sample_key"] = _sample_keys(hashes, frame["image_id"].to_numpy(object), seed)
    return frame


def _repeated(part: pd.DataFrame, column: str) -> pd.DataFrame:
    """The rows whose ``column`` value occurs more than once (all equal values share a
    partition after a shuffle on it)."""
    return part[part[column].duplicated(keep=False)]


def _cell_counts(part: pd.DataFrame) -> pd.DataFrame:
    counts = class_counts(part["split"].to_numpy(), part["label"].to_numpy()).reshape(1, -1)
    return pd.DataFrame(counts, columns=[f"c{i}" for i in range(counts.shape[1])])


def _row_range(part: pd.DataFrame) -> pd.DataFrame:
    rows = part["row"].to_numpy(np.int64)
    low, high = (int(rows.min()), int(rows.max())) if len(rows) else (0, -1)
    return pd.DataFrame({"low": [low], "high": [high]})


def _ranges_overlap(ranges: pd.DataFrame) -> bool:
    """Whether the partitions' row ranges overlap: only then can a ``row`` repeat across
    partitions (each partition's own rows are checked when it is read)."""
    ranges = ranges[ranges["high"] >= ranges["low"]].sort_values("low")
    return bool((ranges["low"].to_numpy()[1:] <= ranges["high"].to_numpy()[:-1]).any())


# ---------------------------------------------------------------------- stage 2: verify, fit
def _select_piece(piece: _Piece | None, index: np.ndarray | None = None) -> pd.DataFrame:
    """The images at ``index`` (indices within the partition) with their pixels."""
    if piece is None:
        ds, index, start = None, np.zeros(0, np.int64), 0
    else:
        ds, start = _images(piece), piece.start
    frame = _metadata_frame(ds, start)
    pixels = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8) if ds is None else ds.pixels
    frame = frame.iloc[index].reset_index(drop=True)
    frame["hash"] = content_hash(pixels[index]) if len(index) else np.zeros(0, np.uint64)
    frame["pixels"] = _pixel_column(pixels[index])
    return frame


def _exact_keys(part: pd.DataFrame) -> pd.DataFrame:
    """Byte-for-byte groups among images of equal hash: each image's group key (the
    lowest position of its identical images), for groups of two or more."""
    out = {"position": np.zeros(0, np.int64), "key": np.zeros(0, np.int64)}
    if not len(part):
        return pd.DataFrame(out)
    flat = _pixels(part["pixels"]).reshape(len(part), _PIXEL_BYTES)
    keys = flat.view(np.dtype((np.void, _PIXEL_BYTES))).reshape(-1)
    _, identical, counts = np.unique(keys, return_inverse=True, return_counts=True)
    identical = identical.reshape(-1)
    positions = part["position"].to_numpy(np.int64)
    lowest = np.full(len(counts), np.iinfo(np.int64).max)
    np.minimum.at(lowest, identical, positions)
    copies = counts[identical] > 1
    return pd.DataFrame({"position": positions[copies], "key": lowest[identical][copies]})


def _fit_sample(parts: list[pd.DataFrame], params: dict[str, Any]
                ) -> tuple[FaceModel, np.ndarray]:
    """Fit the face model on the sampled images; the reference images' positions."""
    sample = pd.concat(parts, ignore_index=True).sort_values("position", kind="stable")
    pixels = _pixels(sample["pixels"])
    model, _ = fit_face_model(pixels, sample["hash"].to_numpy(np.uint64),
                              sample["image_id"].to_numpy(object).astype(str), **params)
    return model, sample["position"].to_numpy(np.int64)[model.reference]


# ---------------------------------------------------------------------- stage 4: score, look up
def _score_part(part: pd.DataFrame, model: FaceModel, references: np.ndarray
                ) -> pd.DataFrame:
    """The partition's images that the face model flags, with what their findings need."""
    positions = part["position"].to_numpy(np.int64)
    found = model.score(_pixels(part["pixels"]), np.isin(positions, references))
    keep = found.scores > model.threshold
    split = pd.Categorical(part["split"].astype(str), categories=list(SPLITS)).codes
    out = pd.DataFrame({
        "position": positions[keep], "row": part["row"].to_numpy(np.int64)[keep],
        "image_id": pd.array(part["image_id"].to_numpy(object)[keep], dtype="str"),
        "split": np.asarray(split, np.int8)[keep],
        "label": part["label"].to_numpy(np.int8)[keep],
        "score": found.scores[keep], "z": found.z[keep],
    })
    for j, name in enumerate(FEATURES):
        out[f"f_{name}"] = found.features[name].to_numpy()[keep]
        out[f"z_{name}"] = found.z_features[keep, j]
    return out


def _meta_piece(piece: _Piece | None) -> pd.DataFrame:
    """The metadata of a partition's images, reading no pixels (the hash stage validated
    these rows already)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if piece is None:
        return _metadata_frame(None, 0)
    table = _read(piece, columns=["row", "image_id", "split", "label"])
    split, image_id = table.column("split"), table.column("image_id")
    if pa.types.is_dictionary(split.type):
        split = split.cast(pa.string())
    if pa.types.is_dictionary(image_id.type):
        image_id = image_id.cast(pa.string())
    codes = pc.index_in(split, value_set=pa.array(SPLITS)).to_numpy(zero_copy_only=False)
    return pd.DataFrame({
        "position": np.arange(piece.start, piece.start + piece.n, dtype=np.int64),
        "row": table.column("row").to_numpy(zero_copy_only=False).astype(np.int64),
        "image_id": pd.array(np.asarray(image_id.to_numpy(zero_copy_only=False), object),
                             dtype="str"),
        "split": np.asarray(codes, np.int8),
        "label": table.column("label").to_numpy(zero_copy_only=False).astype(np.int8),
    })


def _lookup_part(part: pd.DataFrame, rows: np.ndarray, cells: tuple[tuple[int, int], ...],
                 every: bool) -> pd.DataFrame:
    """The images whose ``row`` is in ``rows`` (sorted) or whose (split, label) is one
    of ``cells``; all of them with ``every``."""
    if every:
        return part
    row = part["row"].to_numpy(np.int64)
    keep = np.zeros(len(part), bool)
    if len(rows):
        at = np.minimum(np.searchsorted(rows, row), len(rows) - 1)
        keep |= rows[at] == row
    split, label = part["split"].to_numpy(), part["label"].to_numpy()
    for s, k in cells:
        keep |= (split == s) & (label == k)
    return part[keep]


# ---------------------------------------------------------------------- driver
def _needed(settings: Mapping[str, Any], auditors: Iterable[Any]) -> dict[str, Any]:
    """The auditors that run (reported or required), with their settings."""
    needed: dict[str, Any] = {}
    todo = [a.issue_name for a in auditors]
    while todo:
        name = todo.pop()
        if name not in needed:
            needed[name] = settings[name]
            todo.extend(settings[name].requires())
    return needed


def _check_supported(needed: Mapping[str, Any]) -> None:
    outlier = needed.get("outlier")
    if outlier is not None:
        outlier._check_params()
        if outlier.method != "face_model":
            raise ValueError(f"engine='dask' runs the outliers' face model; method="
                             f"{outlier.method!r} needs every image's mean grey level in one "
                             f"place: use method='face_model' or engine='memory'")


def _seed(random_state: Any) -> int:
    if random_state is None:
        return int(np.random.SeedSequence().entropy % 2**63)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    return int(random_state)


@contextmanager
def _client(client: Any) -> Any:
    """The client to use: given, connected from a spec, the current one, or a new local
    cluster (closed after)."""
    from ferclean.engines._cluster import connect

    _, _, distributed = _dask()
    if isinstance(client, str):
        with connect(client) as made:
            yield made
        return
    if client is not None:
        with client.as_current():
            yield client
        return
    try:
        yield distributed.get_client()
        return
    except ValueError:  # no client yet: start a local one for this audit
        pass
    with connect("local") as made:
        yield made


def _positions_by_piece(pieces: list[_Piece], positions: np.ndarray
                        ) -> tuple[list[_Piece], list[np.ndarray]]:
    """The pieces holding some of ``positions`` (sorted), with their local indices."""
    starts = np.array([p.start for p in pieces], np.int64)
    which = np.searchsorted(starts, positions, side="right") - 1
    chosen, index = [], []
    for i in np.unique(which):
        chosen.append(pieces[i])
        index.append(positions[which == i] - pieces[i].start)
    return chosen, index


def _raise_duplicate_row(pieces: list[_Piece], dup: pd.DataFrame) -> None:
    later = dup.sort_values(["row", "position"]).groupby("row").nth(1)
    first = later.sort_values("position").iloc[0]
    starts = np.array([p.start for p in pieces], np.int64)
    piece = pieces[int(np.searchsorted(starts, first.position, side="right") - 1)]
    raise BadInputError(piece.file, f"row {piece.offset + int(first.position) - piece.start}",
                        f"row {int(first.row)} is not unique (an earlier image has the same "
                        f"row)")


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame({"i": pd.Series(dtype=np.int64), "j": pd.Series(dtype=np.int64),
                         "hamming": pd.Series(dtype=np.int64),
                         "similarity": pd.Series(dtype=np.float64),
                         "transform": pd.Series(dtype=object), "kind": pd.Series(dtype=object)})


def audit_context(data: Any, settings: Mapping[str, Any], auditors: Sequence[Any], *,
                  client: Any = None, outlier_sample: int | None = None,
                  partition_size: int | None = None,
                  progress: bool = False) -> SuppliedContext:
    """Compute on Dask what ``auditors`` need from the pixels of Parquet data.

    The engine behind ``ferclean.audit(path, engine="dask")``: the runner
    (:class:`~ferclean.auditors.runner.Audit`) resolves the settings, this function runs
    the stages of the module notes, and the auditors then build their findings from the
    returned context.

    Parameters
    ----------
    data : path-like
        A ``.parquet`` file or a folder of ``part-NNNNN.parquet`` shards.
    settings : mapping of issue name to Auditor
        The settings of every issue type (:func:`~ferclean.auditors.resolve_auditors`).
    auditors : list of Auditor
        The auditors that report; they and those they require are prepared for.
    client : distributed.Client or str, default=None
        A client, ``"local"`` or a scheduler address (:func:`ferclean.engines._cluster.connect`);
        ``None``: the current client, else a local cluster started for this call.
    outlier_sample : int, default=None
        Images the face model is fitted on (``None``: 20,000).
    partition_size : int, default=None
        Images per partition at most: consecutive row groups of a file are packed up to
        it (a larger row group is cut). ``None``: one partition per row group. Findings
        do not depend on it; memory per worker does.
    progress : bool, default=False
        A status line per stage on stderr.

    Returns
    -------
    SuppliedContext
        Over the metadata of the images the findings involve.

    Examples
    --------
    >>> import tempfile, pathlib, ferclean  # doctest: +SKIP
    >>> from ferclean.io.parquet import write_parquet  # doctest: +SKIP
    >>> shards = write_parquet(ferclean.demo_dataset(), pathlib.Path(tempfile.mkdtemp()) / "s",
    ...                        shard_size=500)  # doctest: +SKIP
    >>> result = ferclean.audit(shards, engine="dask")  # doctest: +SKIP
    >>> result.summary["engine"]["name"]  # doctest: +SKIP
    'dask'
    """
    if isinstance(data, FaceDataset):
        raise TypeError("engine='dask' audits Parquet data, not a FaceDataset in memory: "
                        "write it with ferclean.io.write_parquet(ds, 'shards/', "
                        "shard_size=...) and audit the folder, or use engine='memory'")
    if not isinstance(data, (str, os.PathLike)):
        raise TypeError(f"engine='dask' audits the path of Parquet data; got "
                        f"{type(data).__name__}")
    sample_size = DEFAULT_OUTLIER_SAMPLE if outlier_sample is None else outlier_sample
    for name, value in (("outlier_sample", sample_size), ("partition_size", partition_size)):
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    needed = _needed(settings, auditors)
    _check_supported(needed)
    dask, dd, _ = _dask()
    source = str(data)
    pieces = _pieces(Path(data), None if partition_size is None else int(partition_size))
    bar = Progress(_STAGES, "audit on dask", enabled=progress, tick=0.5)
    with bar, _client(client):
        if not pieces:
            return _empty_context(source, settings, needed)
        stages = _Stages(dask, dd, pieces, needed, int(sample_size), bar)
        return stages.run(source, settings)


class _Stages:
    """The four stages of the module notes, over one dataset's pieces."""

    def __init__(self, dask: Any, dd: Any, pieces: list[_Piece], needed: Mapping[str, Any],
                 sample_size: int, bar: Progress) -> None:
        self.dask, self.dd, self.pieces, self.needed = dask, dd, pieces, needed
        self.n = sum(p.n for p in pieces)
        self.sample_size = min(sample_size, self.n)
        self.bar = bar
        self.intermediates: dict[tuple, Any] = {}

    def _stage(self, desc: str) -> None:
        now = time.perf_counter()
        if getattr(self, "_since", None) is not None:
            _LOG.debug("%s: %.2f s", self._desc, now - self._since)
        self._desc, self._since = desc, now
        self.bar.set_description(f"audit on dask: {desc}")

    def run(self, source: str, settings: Mapping[str, Any]) -> SuppliedContext:
        dask, dd = self.dask, self.dd
        outlier = self.needed.get("outlier")
        # 1. hash
        self._stage("hashing")
        seed = _seed(outlier.random_state) if outlier is not None else 0
        hashed = dd.from_map(_hash_piece, self.pieces, seed=seed, meta=_hash_piece(None),
                             enforce_metadata=False)
        meta_cols = list(_META) + ["hash"]
        repeated = hashed[meta_cols].shuffle(on="hash").map_partitions(
            _repeated, "hash", meta=hashed[meta_cols]._meta)
        ranges = hashed.map_partitions(_row_range, meta=_row_range(hashed._meta))
        counts = hashed.map_partitions(_cell_counts, meta=_cell_counts(hashed._meta)).sum()
        todo = [repeated, ranges, counts]
        if outlier is not None and self.sample_size < self.n:
            todo.append(hashed[["position", "sample_key"]].nsmallest(
                self.sample_size, ["sample_key", "position"]))
        done = dask.compute(*todo)
        repeated, ranges, counts = done[:3]
        if _ranges_overlap(ranges):  # rows not in shard order: check them all
            rows = hashed[["position", "row"]]
            duplicate_rows = rows.shuffle(on="row").map_partitions(
                _repeated, "row", meta=rows._meta).compute()
            if len(duplicate_rows):
                _raise_duplicate_row(self.pieces, duplicate_rows)
        self.counts = counts.to_numpy(np.int64).reshape(len(SPLITS), _WIDTH)
        sample = (np.sort(done[3]["position"].to_numpy(np.int64)) if len(done) > 3
                  else np.arange(self.n, dtype=np.int64))
        self.bar.update()

        # 2. verify the copies byte for byte; fit the face model on the sample
        self._stage("grouping copies" + (", fitting the face model" if outlier else ""))
        todo = []
        candidates = np.sort(repeated["position"].to_numpy(np.int64))
        if len(candidates):
            chosen, index = _positions_by_piece(self.pieces, candidates)
            selected = dd.from_map(_select_piece, chosen, index, meta=_select_piece(None),
                                   enforce_metadata=False)
            todo.append(selected.shuffle(on="hash").map_partitions(
                _exact_keys, meta=_exact_keys(_select_piece(None))).to_delayed())
        if outlier is not None:
            params = outlier._check_params()
            fit_params = {k: params[k] for k in ("n_components", "n_neighbors",
                                                  "n_reference", "threshold",
                                                  "contamination")}
            fit_params["random_state"] = outlier.random_state
            chosen, index = _positions_by_piece(self.pieces, sample)
            drawn = dd.from_map(_select_piece, chosen, index, meta=_select_piece(None),
                                enforce_metadata=False)
            todo.append(dask.delayed(_fit_sample)(drawn.to_delayed(), fit_params))
        done = list(dask.compute(*todo))
        exact = pd.concat(done.pop(0), ignore_index=True) if len(candidates) else (
            _exact_keys(_select_piece(None)))
        fitted = done.pop(0) if outlier is not None else None
        self.bar.update()

        # 3. near duplicates
        near = self.needed.get("near_duplicate")
        pairs = None
        if near is not None:
            self._stage("near duplicates")
            from ferclean.engines.dask_near import dask_near_pairs

            frame = dd.from_map(_image_piece, self.pieces, meta=_image_piece(None),
                                enforce_metadata=False)
            pairs = dask_near_pairs(frame, radius=near.radius, similarity=near.similarity,
                                    mirror=near.mirror, method=near.method,
                                    backend=near.backend)
        self.bar.update()

        # 4. score every partition; look up the metadata the findings need
        self._stage("scoring outliers" if outlier is not None else "looking up images")
        todo = []
        if fitted is not None:
            model, references = fitted
            frame = dd.from_map(_image_piece, self.pieces, meta=_image_piece(None),
                                enforce_metadata=False)
            scored_meta = _score_part(_image_piece(None), model, references)
            todo.append(frame.map_partitions(
                _score_part, dask.delayed(model, traverse=False),
                dask.delayed(references, traverse=False), meta=scored_meta))
        cells: tuple[tuple[int, int], ...] = ()
        imbalance = self.needed.get("class_imbalance")
        if imbalance is not None:
            from ferclean._validation import check_fraction

            table, _ = imbalance_table(self.counts, check_fraction(
                imbalance.threshold, "threshold"))
            under = table[table["under_represented"]]
            cells = tuple((SPLITS.index(s), int(k)) for s, k in zip(under["split"],
                                                                     under["label"],
                                                                     strict=True))
        labels = self.needed.get("label_issue")
        every = labels is not None and (labels.pred_probs is not None
                                        or labels.ferplus is not None)
        wanted = np.zeros(0, np.int64) if pairs is None else np.unique(
            np.concatenate([pairs["row_i"].to_numpy(np.int64),
                            pairs["row_j"].to_numpy(np.int64)]))
        looking = bool(every or cells or len(wanted))
        if looking:
            metadata = dd.from_map(_meta_piece, self.pieces, meta=_meta_piece(None),
                                   enforce_metadata=False)
            todo.append(metadata.map_partitions(
                _lookup_part, dask.delayed(wanted, traverse=False), cells, every,
                meta=_meta_piece(None)))
        done = list(dask.compute(*todo))
        scored = done.pop(0) if fitted is not None else None
        looked = done.pop(0) if looking else _metadata_frame(None, 0)
        self.bar.update()
        self._stage("building findings")
        return self._context(source, settings, repeated, exact, pairs, fitted, scored, looked)

    def _context(self, source: str, settings: Mapping[str, Any], repeated: pd.DataFrame,
                 exact: pd.DataFrame, pairs: pd.DataFrame | None,
                 fitted: tuple[FaceModel, np.ndarray] | None, scored: pd.DataFrame | None,
                 looked: pd.DataFrame) -> SuppliedContext:
        parts = [repeated[list(_META)], looked[list(_META)]]
        if scored is not None:
            parts.append(scored[list(_META)])
        meta = pd.concat([p for p in parts if len(p)] or [_metadata_frame(None, 0)],
                         ignore_index=True)
        meta = meta.drop_duplicates("position").sort_values("position", kind="stable")
        positions = meta["position"].to_numpy(np.int64)
        domain = ImageMetadata(meta["row"], meta["image_id"].to_numpy(object),
                               meta["split"], meta["label"], positions=positions,
                               source=source)
        m = len(domain)
        # exact groups over the domain, numbered by first image as in memory
        labels = -np.arange(1, m + 1, dtype=np.int64)
        if len(exact):
            at = np.searchsorted(positions, exact["position"].to_numpy(np.int64))
            labels[at] = exact["key"].to_numpy(np.int64)
        groups = DuplicateGroups(group_ids_from_labels(labels), "exact")
        near = self.needed.get("near_duplicate")
        if near is not None:
            self.intermediates[intermediate_key("near_pairs", near)] = self._pairs(
                domain, pairs)
        outlier = self.needed.get("outlier")
        if outlier is not None and fitted is not None:
            self.intermediates[intermediate_key("face_model", outlier)] = self._scores(
                positions, fitted, scored)
        totals = self.counts.sum(axis=1)
        summary = {
            "n_images": int(self.n),
            "splits": {SPLITS[s]: int(c) for s, c in enumerate(totals) if c},
            "labels": {name: int(self.counts[:, k].sum()) for k, name in enumerate(EMOTIONS)},
        }
        engine = {"name": "dask", "partitions": len(self.pieces),
                  "outlier_sample": int(self.sample_size) if outlier is not None else None,
                  "outlier_sample_is_all": (bool(self.sample_size >= self.n)
                                            if outlier is not None else None),
                  "images_returned": m}
        return SuppliedContext(domain, settings, exact_groups=groups, class_counts=self.counts,
                               intermediates=self.intermediates, dataset_summary=summary,
                               engine=engine)

    @staticmethod
    def _pairs(domain: ImageMetadata, pairs: pd.DataFrame | None) -> pd.DataFrame:
        """The near search's pairs (by row) in the domain's positions, as
        :meth:`NearDuplicateIndex.pairs` gives them: ``i < j``, sorted."""
        if pairs is None or not len(pairs):
            return _empty_pairs()
        order = np.argsort(domain.rows, kind="stable")
        rows_sorted = domain.rows[order]

        def position(rows: np.ndarray) -> np.ndarray:
            at = np.searchsorted(rows_sorted, rows)
            if np.any(rows_sorted[np.minimum(at, len(rows_sorted) - 1)] != rows):
                raise RuntimeError("a near pair names a row the lookup did not return")
            return order[at]

        a = position(pairs["row_i"].to_numpy(np.int64))
        b = position(pairs["row_j"].to_numpy(np.int64))
        table = pd.DataFrame({
            "i": np.minimum(a, b), "j": np.maximum(a, b),
            "hamming": pairs["hamming"].to_numpy(np.int64),
            "similarity": pairs["similarity"].to_numpy(np.float64),
            "transform": pairs["transform"].to_numpy(object),
            "kind": pairs["kind"].to_numpy(object),
        })
        return table.sort_values(["i", "j"], kind="stable").reset_index(drop=True)

    @staticmethod
    def _scores(positions: np.ndarray, fitted: tuple[FaceModel, np.ndarray],
                scored: pd.DataFrame | None) -> tuple[FaceModel, FaceScores]:
        """The model (references as dataset positions) and the domain's scores: those of
        the flagged images; NaN for the others (not brought back)."""
        model, references = fitted
        m = len(positions)
        scores, z = np.full(m, np.nan), np.full(m, np.nan)
        features = np.full((m, len(FEATURES)), np.nan)
        z_features = np.full((m, len(FEATURES)), np.nan)
        if scored is not None and len(scored):
            at = np.searchsorted(positions, scored["position"].to_numpy(np.int64))
            scores[at] = scored["score"].to_numpy()
            z[at] = scored["z"].to_numpy()
            features[at] = scored[[f"f_{f}" for f in FEATURES]].to_numpy()
            z_features[at] = scored[[f"z_{f}" for f in FEATURES]].to_numpy()
        frame = pd.DataFrame(features, columns=list(FEATURES))
        model = dataclasses.replace(model, reference=np.asarray(references, np.int64))
        return model, FaceScores(frame, z_features, z, scores)


def _empty_context(source: str, settings: Mapping[str, Any], needed: Mapping[str, Any]
                   ) -> SuppliedContext:
    """An empty dataset: nothing to compute, every intermediate empty."""
    domain = ImageMetadata([], [], [], [], source=source)
    intermediates: dict[tuple, Any] = {}
    if "near_duplicate" in needed:
        intermediates[intermediate_key("near_pairs", needed["near_duplicate"])] = _empty_pairs()
    if "outlier" in needed:
        outlier = needed["outlier"]
        params = outlier._check_params()
        model, found = fit_face_model(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
                                      np.zeros(0, np.uint64), np.zeros(0, str),
                                      threshold=params["threshold"],
                                      n_components=params["n_components"])
        intermediates[intermediate_key("face_model", outlier)] = (model, found)
    counts = np.zeros((len(SPLITS), _WIDTH), np.int64)
    return SuppliedContext(domain, settings, exact_groups=DuplicateGroups(
        np.zeros(0, np.int64), "exact"), class_counts=counts, intermediates=intermediates,
        dataset_summary={"n_images": 0, "splits": {}, "labels": dict.fromkeys(EMOTIONS, 0)},
        engine={"name": "dask", "partitions": 0})
