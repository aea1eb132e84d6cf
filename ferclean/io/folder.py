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
(stored, deflate, bzip2 or LZMA, CRC-checked): parsing a 36k-entry central directory
again in every worker would cost ~0.25 s each. :func:`write_folder` encodes in worker
processes too, and writes the files or zip entries in this process, in sorted order.
Workers die with the process that started them, even a killed one.

Hostile files
-------------
No file or entry is read past :data:`MAX_IMAGE_BYTES`: one that declares more (or, in a
zip, a compression ratio deflate cannot reach) is a bad entry before a byte is read or
inflated, and reading stops one byte past the declared size when the declaration lies.
A 2 GiB zip bomb costs no more memory than an image (``benchmarks/bench_hostile.py``).
Non-regular files named like images (a FIFO, a device) are bad entries, never read.
"""

from __future__ import annotations

import bz2
import ctypes
import io
import lzma
import multiprocessing as mp
import os
import re
import signal
import stat
import struct
import sys
import threading
import time
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferclean._outputs import (
    OutputPathError,
    check_output,
    dataset_inputs,
    output_dir,
    output_file,
)
from ferclean._progress import Progress
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, FaceDataset
from ferclean.errors import BadInputError, BadRecords, LossyOutputWarning, check_on_bad

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_BYTES",
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
#: Largest image file or zip entry read, in bytes; a bigger one is a bad entry, refused from
#: its declared size before any byte is read or inflated, and cut off at this many bytes when
#: the declared size lies. FER-2013's largest JPEG is 2,483 bytes and even an uncompressed
#: 16-bit RGBA PNG of 48x48 is 18 kB: 1 MiB leaves room for metadata (EXIF, ICC profiles)
#: while a hostile file costs each decode worker at most this much memory.
MAX_IMAGE_BYTES: int = 1 << 20
# Deflate's best ratio is about 1032:1: headers claiming more than this lie.
_MAX_DEFLATE_RATIO = 1100
_READ_CHUNK = 1 << 16  # compressed bytes read per step while inflating an entry
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


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
        emotion folder or split, outside the ``<top>/<emotion>/`` structure, unreadable,
        over :data:`MAX_IMAGE_BYTES` or claiming to be, not a regular file such as a FIFO):
        raise :class:`~ferclean.errors.BadInputError` naming the file and the entry, skip
        it, or skip it and warn with :class:`~ferclean.errors.BadInputWarning`. Skipped
        entries are listed in ``dropped`` of the result, with the reason.
    workers : int, default=None
        Decoding processes. ``None`` uses every CPU this process may run on; ``1`` decodes
        in this process. Inputs of fewer than 2000 images are always decoded in-process,
        where a pool would cost more than it saves.
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    FaceDataset
        Images in sorted path order. ``ids`` are the relative POSIX paths (zip names
        normalised: ``\\``, a leading ``/`` or ``./`` and ``//`` are read as plain ``/``
        paths), ``rows`` the positions among the sorted image entries, ``source`` is
        ``str(path)``. A folder or zip holding only the top folders (``train/``,
        ``test/``: what :func:`write_folder` writes for an empty dataset) gives an empty
        dataset.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    BadInputError
        If ``path`` is neither a folder nor a zip file, cannot be read or listed (e.g.
        permission denied, on it or a subfolder), holds no images, or (with
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
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{source}: no such file or folder") from None
    except OSError as exc:
        raise BadInputError(source, None, f"cannot read: {_os_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        kind = "dir"
        entries, empty_layout = _list_dir(root)
    elif not stat.S_ISREG(mode):  # opening a FIFO would wait for a writer
        raise BadInputError(
            source, None, f"not a folder or a zip file: it is {_file_kind(mode)}"
        )
    else:
        kind = "zip"
        try:
            with zipfile.ZipFile(root) as zf:
                entries, empty_layout = _list_zip(zf)
        except zipfile.BadZipFile as exc:
            raise BadInputError(
                source, None, f"not a folder or a readable zip file ({exc})"
            ) from None
        except OSError as exc:
            raise BadInputError(source, None, f"cannot read: {_os_reason(exc)}") from None
    if not entries and empty_layout:
        # What write_folder writes for an empty dataset: the top folders and nothing else.
        return FaceDataset(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), source=source)
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
    """The parts of a zip entry's or file's path, normalised: the one place that does it.

    Some Windows tools write backslashes into zip names, others a leading ``/`` or ``./``
    or doubled separators; "." and "" parts carry nothing. Every reader of a zip (the
    folder reader, :func:`copy_files`) finds entries through :func:`_list_zip`, which
    names them with this, so all commands agree on what a zip holds.
    """
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def _is_hidden(parts: list[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _is_image(parts: list[str]) -> bool:
    if not parts or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return False
    return not _is_hidden(parts)


def _is_empty_layout(folders: list[list[str]], n_other_files: int) -> bool:
    """True for an image folder with no images because it holds no data at all: no file
    but hidden ones, and a top folder (``train``, ``test``, ...) of the layout. That is
    what :func:`write_folder` writes for an empty dataset; a README or images of another
    type still make "no images found" an error."""
    if n_other_files:
        return False
    return any(p.lower() in TOP_FOLDER_SPLITS for parts in folders for p in parts)


def _list_zip(zf: zipfile.ZipFile) -> tuple[list[tuple[str, tuple[int, ...]]], bool]:
    """Image entries as ``(relative path, zip key)`` in central-directory order, and
    whether the zip is an empty image folder (:func:`_is_empty_layout`)."""
    entries = []
    folders: list[list[str]] = []
    n_other_files = 0
    for index, info in enumerate(zf.infolist()):
        parts = _relative_parts(info.filename)
        if info.is_dir():
            if not _is_hidden(parts):
                folders.append(parts)
            continue
        if not _is_image(parts):
            n_other_files += not _is_hidden(parts)
        else:
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
    return entries, _is_empty_layout(folders, n_other_files)


def _list_dir(root: Path) -> tuple[list[tuple[str, str]], bool]:
    """Image files as ``(relative POSIX path, same)``, skipping hidden and macOS folders,
    and whether the folder is an empty image folder (:func:`_is_empty_layout`).

    Non-regular files (FIFOs, devices) are listed like files: reading them reports them.
    """
    entries = []
    folders: list[list[str]] = []
    n_other_files = 0

    def unreadable(exc: OSError) -> None:
        # An unreadable subfolder must not silently shrink the dataset: one clear error.
        where = Path(exc.filename or root)
        try:
            rel = where.relative_to(root).as_posix()
        except ValueError:
            rel = str(where)
        location = None if rel == "." else f"folder {rel}"
        raise BadInputError(str(root), location, f"cannot list: {_os_reason(exc)}")

    for folder, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
        rel = Path(folder).relative_to(root).parts
        folders.extend([*rel, d] for d in dirnames)
        for fname in filenames:
            parts = [*rel, fname]
            if _is_image(parts):
                name = "/".join(parts)
                entries.append((name, name))
            else:
                n_other_files += not _is_hidden(parts)
    return entries, _is_empty_layout(folders, n_other_files)


def _os_reason(exc: OSError) -> str:
    """An OS error as a short reason, without the path (messages name it once, up front)."""
    return exc.strerror.lower() if exc.strerror else str(exc)


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISDIR, "a folder"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


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
    """Reads image files below a folder, never more than :data:`MAX_IMAGE_BYTES` of one."""

    # O_NONBLOCK: opening a FIFO must not wait for a writer (regular files ignore it).
    _FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)

    def __init__(self, root: str) -> None:
        self.root = root

    def read(self, key: str) -> bytes:
        fd = os.open(os.path.join(self.root, key), self._FLAGS)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _EntryError(f"not a regular file ({_file_kind(st.st_mode)}); not read")
            if st.st_size > MAX_IMAGE_BYTES:
                raise _EntryError(_too_big(st.st_size, "file"))
            # The size only sizes the first read: a file that grows, or one that reports
            # no size (/proc), is still cut at the cap.
            parts, total, request = [], 0, st.st_size + 1
            while total <= MAX_IMAGE_BYTES:
                chunk = os.read(fd, request)
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
                request = min(_READ_CHUNK, MAX_IMAGE_BYTES + 1 - total)
        finally:
            os.close(fd)
        if total > MAX_IMAGE_BYTES:
            raise _EntryError(f"file holds more than {MAX_IMAGE_BYTES:,} bytes, the limit for "
                              f"a 48x48 image; stopped reading")
        return b"".join(parts)

    def close(self) -> None:
        pass


def _too_big(size: int, what: str) -> str:
    return (f"{what} is {size:,} bytes, over the {MAX_IMAGE_BYTES:,}-byte limit for a 48x48 "
            f"image; not read")


class _Inflate:
    """zlib's raw inflater with the ``needs_input``/``eof`` interface of bz2's and lzma's."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(-zlib.MAX_WBITS)

    @property
    def needs_input(self) -> bool:
        return not self._z.unconsumed_tail

    @property
    def eof(self) -> bool:
        return self._z.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        return self._z.decompress(self._z.unconsumed_tail + data, max_length)


def _lzma_filter(props: bytes, limit: int) -> dict[str, int]:
    """The raw LZMA1 filter of a zip entry's properties (5 bytes: lc/lp/pb, dictionary)."""
    if len(props) != 5 or props[0] >= 9 * 5 * 5:
        raise _EntryError("cannot read entry: corrupt LZMA properties")
    lc, rest = props[0] % 9, props[0] // 9
    dict_size = int.from_bytes(props[1:], "little")
    # No more than limit + 1 bytes are ever decoded, so no match reaches further back: a
    # larger dictionary (up to 4 GiB from a hostile header) would only cost memory.
    return {"id": lzma.FILTER_LZMA1, "lc": lc, "lp": rest % 5, "pb": rest // 5,
            "dict_size": min(dict_size, max(1 << 12, limit + 1))}


def _read_entry_data(fp: Any, csize: int, method: int, limit: int) -> bytes:
    """Read ``csize`` bytes of entry data at ``fp``'s position and inflate them, streaming:
    at most ``limit + 1`` bytes come out, whatever the headers say."""
    if method == zipfile.ZIP_STORED:
        want = min(csize, limit + 1)
        data = fp.read(want)
        if len(data) != want:
            raise _EntryError("cannot read entry: the zip file is truncated")
        return data
    left = csize
    if method == zipfile.ZIP_DEFLATED:
        inflater: Any = _Inflate()
    elif method == zipfile.ZIP_BZIP2:
        inflater = bz2.BZ2Decompressor()
    elif method == zipfile.ZIP_LZMA:
        # zip's LZMA header: version (2 bytes), properties size (2), properties
        head = fp.read(4)
        if len(head) != 4 or left < 4:
            raise _EntryError("cannot read entry: the zip file is truncated")
        props = fp.read(struct.unpack("<H", head[2:])[0])
        left -= 4 + len(props)
        inflater = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[_lzma_filter(props, limit)])
    else:
        raise _EntryError(f"cannot read entry: compression method {method} is not supported "
                          f"(stored, deflate, bzip2 and lzma are)")
    parts: list[bytes] = []
    total = 0
    while total <= limit and not inflater.eof:
        if inflater.needs_input:
            if left <= 0:
                break
            chunk = fp.read(min(left, _READ_CHUNK))
            if not chunk:
                raise _EntryError("cannot read entry: the zip file is truncated")
            left -= len(chunk)
        else:
            chunk = b""
        out = inflater.decompress(chunk, limit + 1 - total)
        parts.append(out)
        total += len(out)
    return b"".join(parts)


class _ZipReader:
    """Reads zip entries from their local headers, given keys made by :func:`_list_zip`.

    Parsing a 36k-entry central directory takes ~0.25 s of pure Python, so workers skip it:
    the parent already knows every entry's offset, sizes, method and CRC. Entries are
    refused from their declared sizes (over :data:`MAX_IMAGE_BYTES`, or a compression
    ratio deflate cannot reach) before a byte is inflated, and inflated in chunks that stop
    past the declared size: a zip bomb costs no more memory than an image.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.fp = open(path, "rb")  # closed by close()

    def read(self, key: tuple[int, ...]) -> bytes:
        _, offset, csize, usize, method, crc, flags = key
        if flags & 0x1:
            raise _EntryError("cannot read entry: it is encrypted")
        if usize > MAX_IMAGE_BYTES:
            raise _EntryError(_too_big(usize, "entry (uncompressed, as its header says)"))
        if method == zipfile.ZIP_DEFLATED and usize > _MAX_DEFLATE_RATIO * csize:
            raise _EntryError(
                f"entry claims a compression ratio of {usize / max(csize, 1):,.0f}:1 "
                f"({csize:,} bytes to {usize:,}), more than deflate can reach: corrupt or "
                f"hostile; not read")
        self.fp.seek(offset)
        header = self.fp.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise _EntryError("cannot read entry: bad local file header (corrupt zip)")
        _, name_len, extra_len = _LOCAL_HEADER.unpack(header)
        self.fp.seek(offset + _LOCAL_HEADER.size + name_len + extra_len)
        try:
            data = _read_entry_data(self.fp, csize, method, usize)
        except (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as exc:
            raise _EntryError(f"cannot read entry: corrupt compressed data ({exc})") from None
        if len(data) > usize:
            raise _EntryError(f"entry holds more data than the {usize:,} bytes its header "
                              f"declares: corrupt or hostile; stopped reading")
        if len(data) != usize or zlib.crc32(data) != crc:
            raise _EntryError("cannot read entry: CRC or size mismatch (corrupt zip)")
        return data

    def close(self) -> None:
        self.fp.close()


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
                raise _EntryError(f"cannot read entry: {_os_reason(exc)}") from None
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


def _pool(
    n_workers: int, initializer: Any = None, initargs: tuple[Any, ...] = ()
) -> Executor:
    """A process pool whose workers die with this process (:func:`_start_worker`); fork
    (no re-imports, ~20 ms) when it is safe, else forkserver/spawn."""
    methods = mp.get_all_start_methods()
    # Forking a process that runs other threads can deadlock the child.
    # Python threads show in active_count(); native thread pools (JAX/XLA, once imported)
    # do not, and forking them can deadlock the child.
    native_threads = any(name in sys.modules for name in ("jax", "jaxlib", "torch"))
    if "fork" in methods and threading.active_count() == 1 and not native_threads:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    return ProcessPoolExecutor(
        n_workers,
        mp_context=mp.get_context(method),
        initializer=_start_worker,
        initargs=(os.getpid(), initializer, initargs),
    )


def _start_worker(parent_pid: int, initializer: Any, initargs: tuple[Any, ...]) -> None:
    """First thing in every pool worker: die with the parent, then its own initializer.

    A killed parent (SIGKILL, a crash, the OOM killer) runs no cleanup, and an idle worker
    waits on its task queue forever: with fork the workers hold the queue's write end
    themselves, so they never see it close. On Linux the kernel sends SIGKILL when the
    parent goes (``PR_SET_PDEATHSIG``); everywhere a watchdog thread notices within half a
    second that the worker was orphaned (its parent process changed, or the pool's owner
    is gone: under forkserver the forkserver is the parent, and it exits with the owner).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no libc to call: the watchdog still works
            pass
    threading.Thread(
        target=_watch_parent, args=(parent_pid, os.getppid()), daemon=True,
        name="ferclean-parent-watchdog",
    ).start()
    if initializer is not None:
        initializer(*initargs)


def _watch_parent(parent_pid: int, ppid: int) -> None:
    while True:
        if os.getppid() != ppid or not _pid_alive(parent_pid):
            os._exit(1)  # no cleanup to run: the results have no one to go to
        time.sleep(0.5)


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # on Windows os.kill(pid, 0) would send CTRL_C_EVENT
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else: not ours, but alive
        return True
    return True


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
        Replace an existing ``path`` (a folder only if ferclean wrote it); otherwise
        :class:`FileExistsError`. ``path`` is never the folder or zip ``ds`` was read
        from, nor inside it (see :mod:`ferclean._outputs`).
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
    ferclean._outputs.OutputError
        If ``path`` is ``ds``'s source or lies inside it, is a non-empty folder ferclean
        did not write, or the disk fills up.

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
    is_zip = target.name.lower().endswith(".zip")
    inputs = dataset_inputs(ds)
    # before any warning or work
    check_output(target, folder=not is_zip, inputs=inputs, overwrite=overwrite)
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
        if is_zip:
            with output_file(target, inputs=inputs, overwrite=overwrite) as tmp:
                # ZIP_STORED: JPEG and PNG data are already compressed.
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                    for name, blob in _encode_all(pixels, names, options, n_workers, bar):
                        zf.writestr(_zip_info(name), blob)
                    _write_empty_layout(zf, None, len(names))
        else:
            with output_dir(target, what="image folder", inputs=inputs,
                            overwrite=overwrite) as tmp:
                for subdir in sorted({name.rsplit("/", 1)[0] for name in names}):
                    (tmp / subdir).mkdir(parents=True, exist_ok=True)
                _write_empty_layout(None, tmp, len(names))
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


def _output_member(image_id: str) -> str:
    """The relative path an image id is written to; OutputPathError if it would leave the
    output (an absolute path, a drive, or a ``..`` part), naming the id."""
    parts = [p for p in image_id.replace("\\", "/").split("/") if p not in ("", ".")]
    if (image_id.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", image_id)
            or ".." in parts or not parts):
        raise OutputPathError(
            f"image id {image_id!r} would be written outside the output folder (an "
            "absolute path or a '..' part): give the images plain relative ids")
    return "/".join(parts)


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
        longer matches its original path (then the file cannot be copied as is), or
        (:class:`~ferclean._outputs.OutputPathError`) an id would lead outside ``path``
        (``..``, an absolute path).

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
    is_zip = target.name.lower().endswith(".zip")
    inputs = dataset_inputs(ds)
    check_output(target, folder=not is_zip, inputs=inputs, overwrite=overwrite)
    # where each file goes: an id must not lead out of the output (``..``, ``/x``)
    members = [_output_member(name) for name in names]
    order = sorted(range(len(names)), key=names.__getitem__)
    # Entries are found as read_folder found them (by their normalised names, through
    # _list_zip) and read through the same capped readers.
    reader, keys = _source_keys(source, names)
    try:
        def blob(name: str) -> bytes:
            try:
                return reader.read(keys[name])
            except OSError as exc:
                raise BadInputError(str(source), name, f"cannot read: {_os_reason(exc)}") from None
            except _EntryError as exc:
                raise BadInputError(str(source), name, str(exc)) from None

        if is_zip:
            with output_file(target, inputs=inputs, overwrite=overwrite) as tmp:
                with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
                    for i in order:
                        zf.writestr(_zip_info(members[i]), blob(names[i]))
                    _write_empty_layout(zf, None, len(names))
        else:
            with output_dir(target, what="image folder", inputs=inputs,
                            overwrite=overwrite) as tmp:
                for i in order:
                    out = tmp / members[i]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(blob(names[i]))
                _write_empty_layout(None, tmp, len(names))
    finally:
        reader.close()
    return target


def _source_keys(
    source: Path, names: list[str]
) -> tuple[_DirReader | _ZipReader, dict[str, Any]]:
    """A reader of the folder or zip a dataset was read from, and the key of every image id."""
    if source.is_dir():
        return _DirReader(str(source)), {name: name for name in names}
    with zipfile.ZipFile(source) as zf:
        listed, _ = _list_zip(zf)
    keys: dict[str, Any] = {}
    for name, key in listed:
        keys.setdefault(name, key)  # a name held twice: read_folder kept the first
    missing = [name for name in names if name not in keys]
    if missing:
        raise ValueError(f"{source}: holds no entry {missing[0]!r} (the zip changed since "
                         f"it was read?)")
    return _ZipReader(str(source)), keys


# An empty dataset is written as its top folders alone: read_folder reads that back as an
# empty dataset, and still calls a folder with no images and no layout a wrong path.
_EMPTY_LAYOUT = ("test", "train")


def _write_empty_layout(zf: zipfile.ZipFile | None, folder: Path | None, n_images: int) -> None:
    if n_images:
        return
    for top in _EMPTY_LAYOUT:
        if zf is not None:
            info = zipfile.ZipInfo(f"{top}/", date_time=_ZIP_DATE)
            info.create_system = 3
            info.external_attr = (0o40755 << 16) | 0x10  # a Unix folder, and MS-DOS's flag
            zf.writestr(info, b"")
        if folder is not None:
            (folder / top).mkdir(exist_ok=True)
