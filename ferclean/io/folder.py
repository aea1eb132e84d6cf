"""The image-folder form of FER-2013: ``<top>/<emotion>/<Split>_<n>.jpg``, as a folder or zip.

Layout
------
As FER-2013 is commonly downloaded::

    train/<emotion>/Training_<n>.jpg                        28,709 images
    test/<emotion>/PublicTest_<n>.jpg, PrivateTest_<n>.jpg   3,589 + 3,589 images

Only the last three parts of an entry's path count, ``<top>/<emotion>/<file>``, so an
extra leading folder (``fer2013/train/happy/...``) is fine. Image entries are files ending
in ``.jpg``, ``.jpeg`` or ``.png`` (any case); folders, hidden files and folders (a name
starting with ``.``), ``__MACOSX/`` and other files (a README) are ignored.

- **Label**: the ``<emotion>`` folder name, case-insensitive, one of
  ``angry, disgust, fear, happy, sad, surprise, neutral`` (mapped to FER-2013 ids by
  :data:`ferclean.EMOTIONS`).
- **Split**: the file-name prefix ``Training_``, ``PublicTest_`` or ``PrivateTest_``
  (case-insensitive) when there is one; otherwise the ``<top>`` folder name
  (case-insensitive):

  ==========================================  ===============
  ``<top>``                                   split
  ==========================================  ===============
  ``train``, ``training``                     ``Training``
  ``val``, ``valid``, ``validation``,         ``PublicTest``
  ``publictest``
  ``test``, ``privatetest``                   ``PrivateTest``
  ==========================================  ===============

  The prefix wins because the usual ``test/`` folder mixes both test splits, and only the
  prefix tells them apart. A ``test/`` image without a prefix is taken as ``PrivateTest``
  (FER-2013's final test set).
- **Order, ids and rows**: entries are sorted by their relative POSIX path; ``ids`` are
  those paths (``train/happy/Training_62256585.jpg``) and ``rows`` their positions in the
  sorted list of image entries, so a skipped bad entry leaves a gap.

Speed
-----
Decoding a 48x48 image is ~50 us of per-image work in PIL, mostly holding the GIL, so
:func:`read_folder` splits the sorted entries into contiguous chunks and decodes them in
worker processes (each opens the folder or zip itself and returns one uint8 array per
chunk), keeping entry order. Zip entries are read straight from their local headers
(stored or deflated, CRC-checked): parsing a 36k-entry central directory again in every
worker would cost ~0.25 s each. :func:`write_folder` encodes in worker processes too, and
writes the files or zip entries in this process, in sorted order.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import re
import struct
import sys
import threading
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferclean._atomic import atomic_dir, atomic_file
from ferclean._progress import Progress
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, FaceDataset
from ferclean.errors import BadInputError, BadRecords, LossyOutputWarning, check_on_bad

__all__ = [
    "IMAGE_SUFFIXES",
    "TOP_FOLDER_SPLITS",
    "LossyOutputWarning",
    "read_folder",
    "write_folder",
]

#: File endings (lower case) that count as images.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
#: Split of an image whose file name has no split prefix, by its top folder (lower case).
TOP_FOLDER_SPLITS: dict[str, str] = {
    "train": "Training",
    "training": "Training",
    "val": "PublicTest",
    "valid": "PublicTest",
    "validation": "PublicTest",
    "publictest": "PublicTest",
    "test": "PrivateTest",
    "privatetest": "PrivateTest",
}
# Below this many images a process pool costs more than it saves (measured on 2 cores:
# pool and in-process reading break even near 2000 images; decoding is ~60 us per image).
_MIN_PARALLEL = 2000
# Chunks per worker: enough for the progress bar to move and for load balancing, few
# enough that per-chunk overhead stays negligible.
_CHUNKS_PER_WORKER = 4
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest zip timestamp: byte-identical output
_SPLIT_PREFIX = re.compile(r"^(training|publictest|privatetest)_", re.IGNORECASE)
_SPLIT_FILE = re.compile(r"^(training|publictest|privatetest)_(.+)\.(jpe?g|png)$", re.IGNORECASE)
_SPLIT_BY_LOWER = {s.lower(): i for i, s in enumerate(SPLITS)}
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, skipped fields, name and extra lengths
_FORMATS = {"jpg": ("jpg", "JPEG"), "jpeg": ("jpg", "JPEG"), "png": ("png", "PNG")}


class _EntryError(Exception):
    """A problem with one entry; its message is the reason recorded under ``on_bad``."""


# ---------------------------------------------------------------------- reading
def read_folder(
    path: str | os.PathLike,
    *,
    on_bad: str = "raise",
    workers: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """Read FER-2013 in its image-folder form, from a folder or a ``.zip`` file.

    Parameters
    ----------
    path : path-like
        A folder, or a zip file, holding ``<top>/<emotion>/<file>`` images (see the module
        documentation for the layout and how labels and splits are derived). It is only
        read, never modified.
    on_bad : {"raise", "skip", "report"}, default="raise"
        What to do with an entry that cannot be used (undecodable, not 48x48, unknown
        emotion folder or split, outside the ``<top>/<emotion>/`` structure): raise
        :class:`~ferclean.errors.BadInputError` naming the file and the entry, skip it, or
        skip it and warn with :class:`~ferclean.errors.BadInputWarning`. Skipped entries
        are listed in ``dropped`` of the result.
    workers : int, default=None
        Decoding processes. ``None`` uses every CPU this process may run on; ``1`` decodes
        in this process. Inputs of fewer than 2000 images are always decoded in-process,
        where a pool would cost more than it saves.
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    FaceDataset
        Images in sorted path order. ``ids`` are the relative POSIX paths, ``rows`` the
        positions among the sorted image entries, ``source`` is ``str(path)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    BadInputError
        If ``path`` is neither a folder nor a zip file, holds no images, or (with
        ``on_bad="raise"``) has a bad entry.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from ferclean import FaceDataset
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[3, 0],
    ...                  splits=["Training", "PublicTest"])
    >>> out = write_folder(ds, pathlib.Path(tempfile.mkdtemp()) / "fer", image_format="png")
    >>> back = read_folder(out)
    >>> back.ids.tolist()
    ['test/angry/PublicTest_1.png', 'train/happy/Training_0.png']
    >>> back.labels.tolist(), back.split_names.tolist()
    ([0, 3], ['PublicTest', 'Training'])
    """
    check_on_bad(on_bad)
    n_workers = _check_workers(workers)
    source = str(path)
    root = Path(path)
    if root.is_dir():
        kind = "dir"
        entries = _list_dir(root)
    elif not root.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    else:
        kind = "zip"
        try:
            with zipfile.ZipFile(root) as zf:
                entries = _list_zip(zf)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadInputError(
                source, None, f"not a folder or a readable zip file ({exc})"
            ) from None
    if not entries:
        raise BadInputError(
            source,
            None,
            "no images found (expected <top>/<emotion>/<file>.jpg|.jpeg|.png entries, "
            "e.g. train/happy/Training_1.jpg)",
        )

    # Python sorts str by code point: the same order on every platform and file system.
    entries.sort(key=lambda e: e[0])
    names = [e[0] for e in entries]
    n = len(entries)
    labels = np.full(n, -1, dtype=np.int8)
    splits = np.zeros(n, dtype=np.int8)
    problems: list[tuple[int, str]] = []  # (row, reason), from metadata and from decoding
    to_decode: list[int] = []
    for row, name in enumerate(names):
        try:
            if row and name == names[row - 1]:
                # A zip may hold a name twice; ids must stay unique.
                raise _EntryError("duplicate entry: the zip holds this name more than once")
            labels[row], splits[row] = _parse_entry(name)
        except _EntryError as exc:
            problems.append((row, str(exc)))
            if on_bad == "raise":
                break  # later entries cannot change which error is raised first
        else:
            to_decode.append(row)

    with Progress(len(to_decode), f"read {root.name}", enabled=progress) as bar:
        decoded, decode_problems = _decode_all(
            kind,
            source,
            [entries[r][1] for r in to_decode],
            n_workers,
            stop_early=on_bad == "raise",
            bar=bar,
        )
    if len(to_decode) == n:
        pixels = decoded  # the usual case: no copy of the whole image array
    else:
        pixels = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        pixels[to_decode] = decoded
    problems.extend((to_decode[i], reason) for i, reason in decode_problems)

    # Records go in entry order, so "raise" reports the first bad entry whatever the
    # number of workers.
    problems.sort()
    bad = BadRecords(source, on_bad)
    for row, reason in problems:
        bad.add(f"{names[row]} (entry {row})", reason)
    keep = np.ones(n, dtype=bool)
    keep[[row for row, _ in problems]] = False
    if keep.all():
        return FaceDataset(
            pixels,
            labels,
            splits,
            np.asarray(names),
            np.arange(n, dtype=np.int64),
            source=source,
            dropped=bad.finish(),
        )
    return FaceDataset(
        pixels[keep],
        labels[keep],
        splits[keep],
        np.asarray(names)[keep],
        np.flatnonzero(keep).astype(np.int64),
        source=source,
        dropped=bad.finish(),
    )


def _check_workers(workers: int | None) -> int:
    if workers is None:
        try:  # CPUs this process may use; os.cpu_count() overcounts in containers
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not on every platform
            return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None; got {workers!r}")
    return int(workers)


def _relative_parts(name: str) -> list[str]:
    # Some Windows tools write backslashes into zip names; "." and "" parts carry nothing.
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _is_image(parts: list[str]) -> bool:
    if not parts or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return False
    return not any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _list_zip(zf: zipfile.ZipFile) -> list[tuple[str, tuple[int, ...]]]:
    """Image entries as ``(relative path, zip key)`` in central-directory order."""
    entries = []
    for index, info in enumerate(zf.infolist()):
        if info.is_dir():
            continue
        parts = _relative_parts(info.filename)
        if _is_image(parts):
            # The key lets a worker read the entry without parsing the central directory.
            key = (
                index,
                info.header_offset,
                info.compress_size,
                info.file_size,
                info.compress_type,
                info.CRC,
                info.flag_bits,
            )
            entries.append(("/".join(parts), key))
    return entries


def _list_dir(root: Path) -> list[tuple[str, str]]:
    """Image files as ``(relative POSIX path, same)``, skipping hidden and macOS folders."""
    entries = []
    # onerror: an unreadable subfolder must not silently shrink the dataset.
    for folder, dirnames, filenames in os.walk(root, onerror=_raise):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
        rel = Path(folder).relative_to(root).parts
        for fname in filenames:
            parts = [*rel, fname]
            if _is_image(parts):
                name = "/".join(parts)
                entries.append((name, name))
    return entries


def _raise(exc: OSError) -> None:
    raise exc


def _parse_entry(name: str) -> tuple[int, int]:
    """Label id and split code of an entry path, or :class:`_EntryError`."""
    parts = name.split("/")
    if len(parts) < 3:
        raise _EntryError(
            "not inside a <top>/<emotion>/ folder (expected e.g. train/happy/Training_1.jpg)"
        )
    top, emotion, fname = parts[-3:]
    label = emotion.lower()
    if label not in EMOTIONS:
        raise _EntryError(
            f"unknown emotion folder {emotion!r}; expected one of {', '.join(EMOTIONS)}"
        )
    prefix = _SPLIT_PREFIX.match(fname)
    if prefix:
        split = _SPLIT_BY_LOWER[prefix.group(1).lower()]
    elif top.lower() in TOP_FOLDER_SPLITS:
        split = SPLITS.index(TOP_FOLDER_SPLITS[top.lower()])
    else:
        raise _EntryError(
            f"unknown split: the file name has no Training_/PublicTest_/PrivateTest_ prefix "
            f"and the top folder {top!r} is not one of {', '.join(TOP_FOLDER_SPLITS)}"
        )
    return EMOTIONS.index(label), split


class _DirReader:
    """Reads image files below a folder."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def close(self) -> None:
        pass


class _ZipReader:
    """Reads zip entries from their local headers, given keys made by :func:`_list_zip`.

    Parsing a 36k-entry central directory takes ~0.25 s of pure Python, so workers skip it:
    the parent already knows every entry's offset, sizes, method and CRC. Methods other
    than stored and deflated fall back to :mod:`zipfile`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fp = open(path, "rb")  # closed by close()
        self._zf: zipfile.ZipFile | None = None

    def read(self, key: tuple[int, ...]) -> bytes:
        index, offset, csize, usize, method, crc, flags = key
        if flags & 0x1:
            raise _EntryError("cannot read entry: it is encrypted")
        if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            return self._fallback(index)
        self.fp.seek(offset)
        header = self.fp.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise _EntryError("cannot read entry: bad local file header (corrupt zip)")
        _, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        self.fp.seek(offset + _LOCAL_HEADER.size + name_len + extra_len)
        data = self.fp.read(csize)
        if len(data) != csize:
            raise _EntryError("cannot read entry: the zip file is truncated")
        if method == zipfile.ZIP_DEFLATED:
            try:
                # Bounded: a corrupt or hostile entry cannot inflate past its stated size.
                data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, usize + 1)
            except zlib.error as exc:
                raise _EntryError(f"cannot read entry: corrupt compressed data ({exc})") from None
        if len(data) != usize or zlib.crc32(data) != crc:
            raise _EntryError("cannot read entry: CRC or size mismatch (corrupt zip)")
        return data

    def _fallback(self, index: int) -> bytes:
        if self._zf is None:
            self._zf = zipfile.ZipFile(self.path)
        try:
            return self._zf.read(self._zf.infolist()[index])
        except (NotImplementedError, RuntimeError, zipfile.BadZipFile, OSError) as exc:
            raise _EntryError(f"cannot read entry: {exc}") from None

    def close(self) -> None:
        self.fp.close()
        if self._zf is not None:
            self._zf.close()


def _open_reader(kind: str, path: str) -> _DirReader | _ZipReader:
    return _ZipReader(path) if kind == "zip" else _DirReader(path)


def _decode_image(data: bytes) -> np.ndarray:
    """One 48x48 uint8 image from encoded bytes, or :class:`_EntryError`."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            # The header gives the size: no need to decode an image of the wrong size.
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise _EntryError(
                    f"image is {im.size[0]}x{im.size[1]}, expected {IMAGE_SIZE}x{IMAGE_SIZE}"
                )
            gray = im if im.mode == "L" else im.convert("L")
            # tobytes() is ~10% faster than np.asarray(im) for tiny images.
            raw = gray.tobytes()
    except _EntryError:
        raise
    except UnidentifiedImageError:
        raise _EntryError("cannot decode image: not a JPEG or PNG image, or corrupt") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad data
        raise _EntryError(f"cannot decode image: {exc or type(exc).__name__}") from None
    return np.frombuffer(raw, dtype=np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE)


def _decode_entries(
    reader: _DirReader | _ZipReader, keys: Sequence[Any], stop_early: bool
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Decode ``keys`` in order: pixels (zeros where bad) and ``(index, reason)`` problems."""
    out = np.zeros((len(keys), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    problems: list[tuple[int, str]] = []
    for i, key in enumerate(keys):
        try:
            try:
                data = reader.read(key)
            except OSError as exc:
                raise _EntryError(f"cannot read entry: {exc}") from None
            out[i] = _decode_image(data)
        except _EntryError as exc:
            problems.append((i, str(exc)))
            if stop_early:  # under on_bad="raise" only the first problem matters
                break
    return out, problems


# State of one pool worker process: the reader it opened once in _init_worker.
_WORKER_READER: _DirReader | _ZipReader | None = None


def _init_worker(kind: str, path: str) -> None:
    global _WORKER_READER
    _WORKER_READER = _open_reader(kind, path)


def _decode_task(keys: Sequence[Any], stop_early: bool) -> tuple[np.ndarray, list]:
    assert _WORKER_READER is not None, "worker was not initialised"
    return _decode_entries(_WORKER_READER, keys, stop_early)


def _chunks(n: int, n_chunks: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` bounds splitting ``range(n)`` into near-equal parts."""
    n_chunks = max(1, min(n_chunks, n))
    bounds = [round(i * n / n_chunks) for i in range(n_chunks + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _use_pool(n_items: int, n_workers: int) -> bool:
    # A daemonic process (a multiprocessing worker) may not start children.
    return n_workers > 1 and n_items >= _MIN_PARALLEL and not mp.current_process().daemon


def _pool(n_workers: int, **kwargs: Any) -> Executor:
    """A process pool; fork (no re-imports, ~20 ms) when it is safe, else forkserver/spawn."""
    methods = mp.get_all_start_methods()
    # Forking a process that runs other threads can deadlock the child.
    # Python threads show in active_count(); native thread pools (JAX/XLA, once imported)
    # do not, and forking them can deadlock the child.
    native_threads = any(name in sys.modules for name in ("jax", "jaxlib", "torch"))
    if "fork" in methods and threading.active_count() == 1 and not native_threads:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    return ProcessPoolExecutor(n_workers, mp_context=mp.get_context(method), **kwargs)


def _decode_all(
    kind: str,
    source: str,
    keys: list[Any],
    n_workers: int,
    *,
    stop_early: bool,
    bar: Progress,
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    out = np.zeros((len(keys), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    problems: list[tuple[int, str]] = []
    if not keys:
        return out, problems
    if not _use_pool(len(keys), n_workers):
        reader = _open_reader(kind, source)
        try:
            # Chunks only so that the progress bar moves.
            for a, b in _chunks(len(keys), max(1, len(keys) // 2000)):
                part, bad = _decode_entries(reader, keys[a:b], stop_early)
                out[a:b] = part
                problems.extend((a + i, reason) for i, reason in bad)
                bar.update(b - a)
                if bad and stop_early:
                    break
        finally:
            reader.close()
        return out, problems
    with _pool(n_workers, initializer=_init_worker, initargs=(kind, source)) as pool:
        futures = {
            pool.submit(_decode_task, keys[a:b], stop_early): (a, b)
            for a, b in _chunks(len(keys), n_workers * _CHUNKS_PER_WORKER)
        }
        while futures:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            for future in done:
                # Dropping the future frees its chunk; as_completed would keep them all
                # (another 80 MB at the peak for the whole of FER-2013).
                a, b = futures.pop(future)
                part, bad = future.result()
                out[a:b] = part
                problems.extend((a + i, reason) for i, reason in bad)
                bar.update(b - a)
                del future, part
    return out, problems


# ---------------------------------------------------------------------- writing
def write_folder(
    ds: FaceDataset,
    path: str | os.PathLike,
    *,
    image_format: str = "jpg",
    quality: int = 95,
    overwrite: bool = False,
    progress: bool = False,
    workers: int | None = None,
) -> Path:
    """Write a dataset in the image-folder form, as a folder or (``path`` ending ``.zip``) a zip.

    Layout: ``train/<emotion>/Training_<n>.<ext>`` for ``Training`` images and
    ``test/<emotion>/<Split>_<n>.<ext>`` for ``PublicTest`` and ``PrivateTest``. When an
    image's id ends in a ``<Split>_<something>.<ext>`` file name (it was read from a
    folder), the name keeps ``<something>`` (with the image's current split as prefix) and
    takes the new extension; otherwise it is ``<Split>_<row>`` from ``ds.rows``.
    :func:`read_folder` reads the result back with the same labels and splits.

    Parameters
    ----------
    ds : FaceDataset
        The images; every one must be labeled.
    path : path-like
        Output folder, or zip file if the name ends in ``.zip``. Written to a temporary
        sibling first and renamed into place when complete.
    image_format : {"jpg", "png"}, default="jpg"
        ``"jpg"`` matches the common download but is lossy: pixel values change by a few
        grey levels, and a :class:`LossyOutputWarning` says so. ``"png"`` is lossless.
        ``"jpeg"`` means ``"jpg"``.
    quality : int, default=95
        JPEG quality, 1..100 (ignored for PNG).
    overwrite : bool, default=False
        Replace an existing ``path``; otherwise :class:`FileExistsError`.
    progress : bool, default=False
        Show a progress bar on stderr.
    workers : int, default=None
        Encoding processes; ``None`` uses every CPU this process may run on, ``1`` encodes
        in this process (as do datasets under 2000 images).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If an image is unlabeled, two images would get the same file name, or an option
        is invalid.
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile, pathlib, zipfile
    >>> import numpy as np
    >>> from ferclean import FaceDataset
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[3, 6],
    ...                  splits=["Training", "PrivateTest"])
    >>> out = write_folder(ds, pathlib.Path(tempfile.mkdtemp()) / "fer.zip",
    ...                    image_format="png")
    >>> zipfile.ZipFile(out).namelist()
    ['test/neutral/PrivateTest_1.png', 'train/happy/Training_0.png']
    """
    fmt = str(image_format).lower().lstrip(".")
    if fmt not in _FORMATS:
        raise ValueError(f"image_format must be 'jpg' or 'png'; got {image_format!r}")
    ext, pil_format = _FORMATS[fmt]
    if (
        isinstance(quality, bool)
        or not isinstance(quality, int | np.integer)
        or not (1 <= quality <= 100)
    ):
        raise ValueError(f"quality must be an integer in 1..100; got {quality!r}")
    n_workers = _check_workers(workers)
    target = Path(path)
    if target.exists() and not overwrite:  # before any warning or work
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    names = _output_names(ds, ext)
    if pil_format == "JPEG":
        warnings.warn(
            "writing JPEG images: JPEG compression changes pixel values by a few grey "
            "levels; use image_format='png' for a lossless copy",
            LossyOutputWarning,
            stacklevel=2,
        )
    # Sorted paths: the order read_folder uses, and a deterministic zip.
    order = sorted(range(len(names)), key=names.__getitem__)
    names = [names[i] for i in order]
    # A dataset read from a folder is already in this order: then no 80 MB copy.
    in_order = order == list(range(len(order)))
    pixels = ds.pixels if in_order else ds.pixels[np.asarray(order, dtype=np.int64)]
    options = (pil_format, int(quality))

    with Progress(len(names), f"write {target.name}", enabled=progress) as bar:
        if target.name.lower().endswith(".zip"):
            with atomic_file(target, overwrite=overwrite) as tmp:
                # ZIP_STORED: JPEG and PNG data are already compressed.
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                    for name, blob in _encode_all(pixels, names, options, n_workers, bar):
                        zf.writestr(_zip_info(name), blob)
        else:
            with atomic_dir(target, overwrite=overwrite) as tmp:
                for subdir in sorted({name.rsplit("/", 1)[0] for name in names}):
                    (tmp / subdir).mkdir(parents=True, exist_ok=True)
                # This process creates the files while the workers encode: file creation
                # does not get faster in parallel (measured on ext4: 2 writers, same time,
                # twice the CPU), so only encoding is spread over processes.
                for name, blob in _encode_all(pixels, names, options, n_workers, bar):
                    (tmp / name).write_bytes(blob)
    return target


def _output_names(ds: FaceDataset, ext: str) -> list[str]:
    """Relative output path of every image; ValueError if unlabeled or not unique."""
    unlabeled = np.flatnonzero(ds.labels < 0)
    if unlabeled.size:
        raise ValueError(
            f"cannot write unlabeled images in the image-folder form (its folders are the "
            f"labels): {unlabeled.size} of {len(ds)} images have label -1, the first at "
            f"position {int(unlabeled[0])} (id {str(ds.ids[unlabeled[0]])!r})"
        )
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, (label, split, image_id, row) in enumerate(
        zip(ds.labels.tolist(), ds.splits.tolist(), ds.ids.tolist(), ds.rows.tolist(), strict=True)
    ):
        split_name = SPLITS[split]
        match = _SPLIT_FILE.match(str(image_id).replace("\\", "/").rsplit("/", 1)[-1])
        if match and match.group(1).lower() == split_name.lower():
            stem = match.group(0)[: -len(match.group(3)) - 1]
        elif match:  # the image moved to another split: the prefix must say the new one
            stem = f"{split_name}_{match.group(2)}"
        else:
            stem = f"{split_name}_{row}"
        top = "train" if split_name == "Training" else "test"
        name = f"{top}/{EMOTIONS[label]}/{stem}.{ext}"
        # Compare case-folded: on macOS and Windows file systems case does not separate.
        key = name.casefold()
        if key in seen:
            j = seen[key]
            raise ValueError(
                f"two images would be written to {name}: positions {j} and {i} (ids "
                f"{str(ds.ids[j])!r} and {str(image_id)!r}); give them distinct ids or rows"
            )
        seen[key] = i
        names.append(name)
    return names


def _zip_info(name: str) -> zipfile.ZipInfo:
    # Fixed time, system and permissions: the same data gives a byte-identical zip.
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # Unix, whatever platform writes it
    info.external_attr = 0o644 << 16
    return info


def _encode_image(img: np.ndarray, pil_format: str, quality: int) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(img))
    if pil_format == "JPEG":
        im.save(buf, format="JPEG", quality=quality)
    else:
        im.save(buf, format="PNG")
    return buf.getvalue()


def _encode_task(pixels: np.ndarray, pil_format: str, quality: int) -> list[bytes]:
    return [_encode_image(img, pil_format, quality) for img in pixels]


def _encode_all(
    pixels: np.ndarray,
    names: list[str],
    options: tuple[str, int],
    n_workers: int,
    bar: Progress,
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, encoded image)`` in order, encoding in worker processes if worth it."""
    n = len(pixels)
    if not _use_pool(n, n_workers):
        for i in range(n):
            yield names[i], _encode_image(pixels[i], *options)
            bar.update()
        return
    with _pool(n_workers) as pool:
        bounds = _chunks(n, n_workers * _CHUNKS_PER_WORKER)
        futures: dict[int, Future[list[bytes]]] = {
            k: pool.submit(_encode_task, pixels[a:b], *options) for k, (a, b) in enumerate(bounds)
        }
        # In order: entries go into the zip (and files onto disk) in sorted order.
        for k, (a, b) in enumerate(bounds):
            blobs = futures.pop(k).result()  # popped: each chunk is freed once written
            yield from zip(names[a:b], blobs, strict=True)
            bar.update(b - a)


def copy_files(
    ds: FaceDataset, path: str | os.PathLike, *, overwrite: bool = False
) -> Path:
    """Write ``ds`` in the image-folder form by copying each image's original file.

    For a dataset read from a folder or zip (``ds.source``) and only subset since — e.g.
    a cleaned dataset — this keeps every file byte for byte, so nothing is re-encoded and
    reading the copy gives exactly the same pixels. Output is a folder, or a zip when
    ``path`` ends in ``.zip`` (with fixed timestamps, so it is reproducible).

    Raises
    ------
    ValueError
        If the dataset was not read from a folder or zip, or an image's label or split no
        longer matches its original path (then the file cannot be copied as is).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import numpy as np
    >>> from ferclean import FaceDataset
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> ds = FaceDataset(np.arange(2 * 48 * 48).reshape(2, 48, 48) % 256, labels=[3, 6])
    >>> src = write_folder(ds, d / "in.zip", image_format="png")
    >>> copied = copy_files(read_folder(src)[[1]], d / "out.zip")
    >>> read_folder(copied).pixels.tolist() == ds.pixels[[1]].tolist()
    True
    """
    source = Path(str(ds.source)) if ds.source else None
    if source is None or not (source.is_dir() or zipfile.is_zipfile(source)):
        raise ValueError(f"copy_files needs a dataset read from a folder or zip; its source "
                         f"is {ds.source!r}")
    names = [str(i) for i in ds.ids]
    for name, label, split in zip(names, ds.labels.tolist(), ds.splits.tolist(), strict=True):
        try:
            parsed = _parse_entry(name)
        except _EntryError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if parsed != (label, split):
            raise ValueError(f"{name}: its label or split changed since it was read; write "
                             f"it with write_folder instead")
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    order = sorted(range(len(names)), key=names.__getitem__)
    zf_in = zipfile.ZipFile(source) if not source.is_dir() else None
    try:
        def blob(name: str) -> bytes:
            return zf_in.read(name) if zf_in is not None else (source / name).read_bytes()

        if target.name.lower().endswith(".zip"):
            with atomic_file(target, overwrite=overwrite) as tmp:
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                    for i in order:
                        zf.writestr(_zip_info(names[i]), blob(names[i]))
        else:
            with atomic_dir(target, overwrite=overwrite) as tmp:
                for i in order:
                    out = tmp / names[i]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(blob(names[i]))
    finally:
        if zf_in is not None:
            zf_in.close()
    return target
