"""The Kaggle CSV form of FER-2013: ``emotion,pixels,Usage``.

Variants read: the Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``), files without the
``Usage`` column (every image goes to ``Training``), files without ``emotion`` (images are
unlabeled), and ``icml_face_data.csv`` (``emotion, Usage, pixels`` with leading spaces in
the header). Column order is taken from the header.

How the fast reader works
-------------------------
A valid file is digits, single spaces and a little fixed text per row, so the reader does
not split strings. It memory-maps the file, cuts it into newline-aligned chunks of a few MB
and, in a thread per core (numpy releases the GIL), finds the last digit of every number
with two vectorised comparisons, gathers the up-to-three digits before it in one 8-byte
gather, and turns them into values. The same gather checks the structure: at most three
digits per number, a single space between pixels, every row starting at a line start, the
right count of numbers, commas and lines. Anything unexpected sends the whole file to a
careful row-by-row reader that names the row and what is wrong (and applies ``on_bad``).
"""

from __future__ import annotations

import csv as _csv
import mmap
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ferclean._atomic import atomic_file
from ferclean._progress import Progress
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, UNLABELED, FaceDataset
from ferclean.errors import BadInputError, BadRecords, check_on_bad

N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
_CHUNK_BYTES = 4 << 20
_KNOWN_COLUMNS = {"emotion": "emotion", "pixels": "pixels", "usage": "Usage"}
# Byte values after subtracting ord("0"), as the fast path sees them.
_NEWLINE = (10 - 48) % 256
_QUOTE = (34 - 48) % 256
_SPACE = (32 - 48) % 256
_FIELD_START = np.array([(c - 48) % 256 for c in b',"\n'], np.uint8)
_FIELD_END = np.array([(c - 48) % 256 for c in b',"\r\n'], np.uint8)


class _Anomaly(Exception):
    """Raised inside the fast path when the careful reader must take over."""


def read_csv(
    path: str | os.PathLike,
    *,
    on_bad: str = "raise",
    workers: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """Read a FER-2013 CSV (Kaggle, no-``Usage``, no-``emotion`` or ICML variant).

    Parameters
    ----------
    path : path-like
        The CSV file. It is only read, never modified.
    on_bad : {"raise", "skip", "report"}, default="raise"
        What to do with a bad row: raise :class:`~ferclean.errors.BadInputError` naming the
        row, or drop it and list it in ``dataset.dropped`` (``report`` also warns).
    workers : int, default=None
        Threads for parsing; ``None`` uses every core.
    progress : bool, default=False
        Show a progress bar on stderr.

    Returns
    -------
    FaceDataset
        ``ids`` are the 0-based data-row numbers as strings, ``rows`` the same numbers.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "tiny.csv"
    >>> _ = p.write_text("emotion,pixels,Usage\\n3," + " ".join(["7"] * 2304) + ",PublicTest\\n")
    >>> ds = read_csv(p)
    >>> ds.labels.tolist(), ds.split_names.tolist(), int(ds.pixels[0, 0, 0])
    ([3], ['PublicTest'], 7)
    """
    check_on_bad(on_bad)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    size = path.stat().st_size
    if size == 0:
        raise BadInputError(str(path), None, "file is empty")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        header_end = mm.find(b"\n")
        header_end = size if header_end < 0 else header_end + 1
        columns = _parse_header(bytes(mm[:header_end]), path)
        body = np.frombuffer(mm, dtype=np.uint8)[header_end:]
        try:
            try:
                result = _read_fast(body, columns, workers, progress)
            except _Anomaly:
                result = None
            if result is not None:
                pixels, labels, splits = result
                n = len(pixels)
                return FaceDataset(
                    pixels,
                    labels=labels,
                    splits=splits,
                    ids=np.arange(n).astype(str),
                    rows=np.arange(n, dtype=np.int64),
                    source=str(path),
                )
        finally:
            del body  # release the buffer export so the mmap can close
    return _read_careful(path, on_bad)


# ------------------------------------------------------------------------- header
def _parse_header(line: bytes, path: Path) -> list[str]:
    text = line.decode("utf-8-sig", errors="replace").strip()
    if not text:
        raise BadInputError(str(path), "line 1", "header is empty; expected emotion,pixels,Usage")
    names = [c.strip().strip('"').strip() for c in text.split(",")]
    if any(ch.isdigit() for ch in text) and "pixels" not in [n.lower() for n in names]:
        raise BadInputError(
            str(path), "line 1", "no header row; expected a header such as emotion,pixels,Usage"
        )
    columns = []
    for name in names:
        columns.append(_KNOWN_COLUMNS.get(name.lower(), name))
    if "pixels" not in columns:
        raise BadInputError(
            str(path), "line 1", f"missing column 'pixels' (header has: {', '.join(names)})"
        )
    return columns


# ----------------------------------------------------------------------- fast path
def _read_fast(
    body: np.ndarray, columns: list[str], workers: int | None, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if set(columns) - {"emotion", "pixels", "Usage"} or len(set(columns)) != len(columns):
        raise _Anomaly  # unknown extra columns: the careful reader handles them
    layout = _Layout(columns)
    # Trailing blank space at the end of the file is fine; interior blank lines are not.
    end = len(body)
    while end and body[end - 1] in (10, 13, 32):
        end -= 1
    if end == 0:
        raise _Anomaly  # no data rows: the careful reader says so
    body = body[:end]
    bounds = _chunk_bounds(body)
    n_workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        counts = list(pool.map(lambda b: int(np.count_nonzero(body[b[0] : b[1]] == 10)), bounds))
        # Every chunk but the last ends with its newline; the last has none (trimmed).
        rows_per_chunk = [c + (1 if i == len(bounds) - 1 else 0) for i, c in enumerate(counts)]
        offsets = np.concatenate([[0], np.cumsum(rows_per_chunk)])
        n = int(offsets[-1])
        pixels = np.empty((n, N_PIXELS), np.uint8)
        labels = np.full(n, UNLABELED, np.int8)
        splits = np.zeros(n, np.int8)
        bar = Progress(len(bounds), "reading CSV", enabled=progress)

        def work(i: int) -> None:
            a, b = bounds[i]
            r0, r1 = int(offsets[i]), int(offsets[i + 1])
            _parse_chunk(body[a:b], layout, pixels[r0:r1], labels[r0:r1], splits[r0:r1])
            bar.update()

        try:
            list(pool.map(work, range(len(bounds))))
        finally:
            bar.close()
    return pixels.reshape(n, IMAGE_SIZE, IMAGE_SIZE), labels, splits


class _Layout:
    """Where the numbers and the Usage text sit in a row, from the header order."""

    def __init__(self, columns: list[str]) -> None:
        self.has_label = "emotion" in columns
        self.has_usage = "Usage" in columns
        digit_cols = [c for c in columns if c in ("emotion", "pixels")]
        self.tokens = N_PIXELS + int(self.has_label)
        # Token index of the emotion number and of the first pixel within a row.
        self.label_token = 0 if digit_cols[0] == "emotion" else N_PIXELS
        self.pixel_token = 1 if self.has_label and self.label_token == 0 else 0
        self.commas = len(columns) - 1
        # The Usage text follows the last token of the numeric column just before it, or
        # starts the line when it is the first column.
        self.usage_after: int | None = None
        if self.has_usage:
            before = columns[: columns.index("Usage")]
            nums = [c for c in before if c in ("emotion", "pixels")]
            if not nums:
                self.usage_after = None
            elif nums[-1] == "emotion":
                self.usage_after = self.label_token
            else:
                self.usage_after = self.pixel_token + N_PIXELS - 1


def _chunk_bounds(body: np.ndarray) -> list[tuple[int, int]]:
    raw = body.data  # memoryview over the mmap; .find via bytes of small windows
    n = len(body)
    bounds = []
    start = 0
    mv = memoryview(raw)
    while start < n:
        stop = min(start + _CHUNK_BYTES, n)
        if stop < n:
            # extend to the end of the current line
            tail = bytes(mv[stop : min(stop + 65536, n)])
            k = tail.find(b"\n")
            stop = n if k < 0 else stop + k + 1
        bounds.append((start, stop))
        start = stop
    return bounds


_PATTERNS = [(code, np.frombuffer(name.lower().encode(), np.uint8)) for code, name in
             enumerate(SPLITS)]


_scratch = threading.local()


def _buffer(name: str, size: int, dtype: type) -> np.ndarray:
    """A per-thread scratch array reused across chunks.

    Fresh multi-MB arrays per chunk cost a page fault per 4 KB on first touch, which was
    a third of the reader's time; reusing buffers avoids it.
    """
    buf = getattr(_scratch, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(max(size, int(size * 1.25)), dtype)
        setattr(_scratch, name, buf)
    return buf[:size]


def _parse_chunk(
    chunk: np.ndarray,
    layout: _Layout,
    out_pixels: np.ndarray,
    out_labels: np.ndarray,
    out_splits: np.ndarray,
) -> None:
    n = len(chunk)
    rows = len(out_pixels)
    # d holds bytes minus ord("0") with 4 non-digit bytes of padding before and 9 after, so
    # every lookback/lookahead below stays inside the array.
    d = _buffer("d", n + 13, np.uint8)
    d[:4] = _NEWLINE
    d[4 + n :] = _NEWLINE
    np.subtract(chunk, 48, out=d[4 : 4 + n])
    is_digit = np.less(d, 10, out=_buffer("is_digit", n + 13, np.bool_))
    ends = np.greater(is_digit[4:-1], is_digit[5:], out=_buffer("ends", n + 8, np.bool_))
    # pos[k] is the last digit of number k, counted from d[4]; so d[4 - j:][pos] is the
    # byte j places before it. Offset views avoid building shifted index arrays.
    pos = np.flatnonzero(ends)
    m = len(pos)
    if m != rows * layout.tokens:
        raise _Anomaly
    if layout.commas and np.count_nonzero(chunk == 44) != rows * layout.commas:
        raise _Anomaly

    def gather(source: np.ndarray, name: str) -> np.ndarray:
        return np.take(source, pos, out=_buffer(name, m, source.dtype))

    ones, tens, hundreds = gather(d[4:], "g0"), gather(d[3:], "g1"), gather(d[2:], "g2")
    has_tens = np.less(tens, 10, out=_buffer("m1", m, np.bool_))
    has_hundreds = np.less(hundreds, 10, out=_buffer("m2", m, np.bool_))
    has_hundreds &= has_tens
    # Numbers are maximal runs of digits, so every digit is counted by some number; the
    # counts match only if no number has four or more digits.
    counted = m + np.count_nonzero(has_tens) + np.count_nonzero(has_hundreds)
    if np.count_nonzero(is_digit) != counted:
        raise _Anomaly
    values = _buffer("values", m, np.uint16)
    values[:] = ones
    tens *= has_tens
    hundreds *= has_hundreds
    values += tens * np.uint16(10)
    values += hundreds * np.uint16(100)
    if values.max(initial=0) > 255:
        raise _Anomaly
    values = values.reshape(rows, layout.tokens)
    p0, p1 = layout.pixel_token, layout.pixel_token + N_PIXELS
    # Between two pixels: exactly one space, then the next number.
    after = gather(d[5:], "g3").reshape(rows, layout.tokens)[:, p0 : p1 - 1]
    then = gather(is_digit[6:], "g4").reshape(rows, layout.tokens)[:, p0 : p1 - 1]
    if not (np.all(after == _SPACE) and np.all(then)):
        raise _Anomaly
    # Every row's first number starts its line (possibly after a quote).
    first = pos.reshape(rows, layout.tokens)[:, 0]
    length = 1 + has_tens.reshape(rows, -1)[:, 0] + has_hundreds.reshape(rows, -1)[:, 0]
    start = first + 4 - length + 1  # index in d of the first digit
    before = d[start - 1]
    ok = (before == _NEWLINE) | ((before == _QUOTE) & (d[start - 2] == _NEWLINE))
    if not np.all(ok):
        raise _Anomaly
    # The numbers at field edges must touch a field delimiter, so that "-4" or "x4"
    # cannot pass as 4.
    tok_len = np.add(has_tens, has_hundreds, dtype=np.uint8).reshape(rows, layout.tokens) + 1
    pos2 = pos.reshape(rows, layout.tokens) + 4  # index in d of each number's last digit
    label = [layout.label_token] if layout.has_label else []
    for t in [p0, *label]:  # numbers that open a field
        if not np.isin(d[pos2[:, t] - tok_len[:, t]], _FIELD_START).all():
            raise _Anomaly
    for t in [p1 - 1, *label]:  # numbers that close a field
        if not np.isin(d[pos2[:, t] + 1], _FIELD_END).all():
            raise _Anomaly
    out_pixels[:] = values[:, p0:p1]
    if layout.has_label:
        lab = values[:, layout.label_token]
        lab_len = length if layout.label_token == 0 else None
        if np.any(lab >= len(EMOTIONS)) or (lab_len is not None and np.any(lab_len != 1)):
            raise _Anomaly
        out_labels[:] = lab
    if layout.has_usage:
        out_splits[:] = _usage_codes(d, pos.reshape(rows, layout.tokens) + 4, layout)


def _usage_codes(d: np.ndarray, last: np.ndarray, layout: _Layout) -> np.ndarray:
    rows = len(last)
    if layout.usage_after is None:
        # Usage is the first column: it starts right after the previous line's newline.
        starts = np.empty(rows, np.int64)
        starts[0] = 4
        starts[1:] = last[:-1, -1] + 1  # search window begins after the previous row
    else:
        starts = last[:, layout.usage_after] + 1
    width = 48
    idx = np.minimum(starts[:, None] + np.arange(width), len(d) - 1)
    win = d[idx].astype(np.int16) + 48  # back to ASCII
    is_letter = ((win | 0x20) >= ord("a")) & ((win | 0x20) <= ord("z"))
    if not np.all(is_letter.any(axis=1)):
        raise _Anomaly
    first = is_letter.argmax(axis=1)
    lower = (win | 0x20).astype(np.uint8)
    codes = np.full(rows, -1, np.int8)
    for code, pattern in _PATTERNS:
        k = len(pattern)
        cols = np.minimum(first[:, None] + np.arange(k + 1), width - 1)
        seg = np.take_along_axis(lower, cols, axis=1)
        match = np.all(seg[:, :k] == pattern, axis=1)
        term = np.take_along_axis(win, cols[:, k : k + 1], axis=1)[:, 0]
        match &= ~(((term | 0x20) >= ord("a")) & ((term | 0x20) <= ord("z")))
        codes[match & (codes < 0)] = code
    if np.any(codes < 0):
        raise _Anomaly
    return codes


# -------------------------------------------------------------------- careful path
def _read_careful(path: Path, on_bad: str) -> FaceDataset:
    """Row-by-row reader: slow, but names the row and the problem for any bad input."""
    bad = BadRecords(str(path), on_bad)
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    splits: list[int] = []
    rows: list[int] = []
    split_lookup = {s.lower(): i for i, s in enumerate(SPLITS)}
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = _csv.reader(fh)
        header = next(reader, None)
        names = [_KNOWN_COLUMNS.get(h.strip().lower(), h.strip()) for h in header or []]
        if "pixels" not in names:
            raise BadInputError(str(path), "line 1", "missing column 'pixels'")
        i_pix = names.index("pixels")
        i_lab = names.index("emotion") if "emotion" in names else None
        i_use = names.index("Usage") if "Usage" in names else None
        row = -1
        for fields in reader:
            row += 1
            where = f"row {row} (line {reader.line_num})"
            if not fields or all(not f.strip() for f in fields):
                bad.add(where, "blank line")
                continue
            if len(fields) != len(names):
                bad.add(where, f"expected {len(names)} fields ({','.join(names)}), "
                        f"found {len(fields)}")
                continue
            label = UNLABELED
            if i_lab is not None:
                text = fields[i_lab].strip()
                if not text.isdigit() or int(text) >= len(EMOTIONS):
                    bad.add(where, f"unknown label {text!r}; expected an integer 0..6")
                    continue
                label = int(text)
            split = 0
            if i_use is not None:
                text = fields[i_use].strip()
                if text.lower() not in split_lookup:
                    bad.add(where, f"unknown Usage {text!r}; expected one of {', '.join(SPLITS)}")
                    continue
                split = split_lookup[text.lower()]
            tokens = fields[i_pix].split()
            if len(tokens) != N_PIXELS:
                bad.add(where, f"expected {N_PIXELS} pixel values, found {len(tokens)}")
                continue
            try:
                values = np.fromiter(map(int, tokens), np.int64, N_PIXELS)
            except ValueError:
                values = None
            if values is None or values.min() < 0 or values.max() > 255:
                k = next(i for i, t in enumerate(tokens) if not (t.isdigit() and int(t) <= 255))
                bad.add(where, f"pixel {k} is {tokens[k]!r}, not an integer in 0..255")
                continue
            pixels.append(values.astype(np.uint8))
            labels.append(label)
            splits.append(split)
            rows.append(row)
    if row < 0:
        raise BadInputError(str(path), None, "no data rows after the header")
    n = len(pixels)
    arr = (
        np.stack(pixels).reshape(n, IMAGE_SIZE, IMAGE_SIZE)
        if n
        else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    )
    return FaceDataset(
        arr,
        labels=np.asarray(labels, np.int8),
        splits=np.asarray(splits, np.int8),
        ids=np.asarray(rows).astype(str),
        rows=np.asarray(rows, np.int64),
        source=str(path),
        dropped=bad.finish(),
    )


# -------------------------------------------------------------------------- writer
def _pixel_table() -> tuple[np.ndarray, np.ndarray]:
    """Per value 0..255: its decimal digits then a space, NUL-padded to 4 bytes."""
    table = np.zeros((256, 4), np.uint8)
    for v in range(256):
        text = f"{v} ".encode()
        table[v, : len(text)] = np.frombuffer(text, np.uint8)
    return table, (table != 0).sum(axis=1)


_TABLE, _ = _pixel_table()


def format_csv_rows(ds: FaceDataset, *, usage: bool = True) -> bytes:
    """Format a dataset as Kaggle CSV data rows (no header), vectorised.

    Examples
    --------
    >>> import numpy as np
    >>> ds = FaceDataset(np.full((1, 48, 48), 5, np.uint8), labels=[2])
    >>> format_csv_rows(ds)[:12]
    b'2,5 5 5 5 5 '
    """
    n = len(ds)
    if n == 0:
        return b""
    labels = ds.labels
    if np.any(labels < 0):
        raise ValueError(
            "cannot write unlabeled images with an emotion column; use labels=False"
        )
    suffix_width = 13  # ",PrivateTest\n"
    out_parts = []
    step = 4096
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        m = r1 - r0
        buf = np.zeros((m, 2 + N_PIXELS * 4 + suffix_width), np.uint8)
        buf[:, 0] = labels[r0:r1] + 48
        buf[:, 1] = ord(",")
        body = buf[:, 2 : 2 + N_PIXELS * 4].reshape(m, N_PIXELS, 4)
        body[:] = _TABLE[ds.pixels[r0:r1].reshape(m, N_PIXELS)]
        # drop the space after the last pixel of each row
        last = body[:, -1, :]
        last[last == 32] = 0
        tail = buf[:, 2 + N_PIXELS * 4 :]
        if usage:
            for code, name in enumerate(SPLITS):
                text = np.frombuffer(f",{name}\n".encode(), np.uint8)
                sel = ds.splits[r0:r1] == code
                tail[np.ix_(sel, np.arange(len(text)))] = text
        else:
            tail[:, 0] = 10
        out_parts.append(buf[buf != 0].tobytes())
    return b"".join(out_parts)


def write_csv(
    ds: FaceDataset, path: str | os.PathLike, *, usage: bool = True, overwrite: bool = False
) -> Path:
    """Write a dataset as a Kaggle CSV (``emotion,pixels,Usage``), atomically. Lossless.

    Parameters
    ----------
    ds : FaceDataset
    path : path-like
        Output file; refused if it exists unless ``overwrite=True``.
    usage : bool, default=True
        Write the ``Usage`` column.
    overwrite : bool, default=False

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[0, 6])
    >>> p = write_csv(ds, pathlib.Path(tempfile.mkdtemp()) / "out.csv")
    >>> read_csv(p).equals(ds)
    True
    """
    path = Path(path)
    header = b"emotion,pixels,Usage\n" if usage else b"emotion,pixels\n"
    with atomic_file(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header)
            fh.write(format_csv_rows(ds, usage=usage))
    return path


def csv_text(ds: FaceDataset) -> str:
    """The whole Kaggle CSV of a dataset as a string (handy for small data and tests).

    Examples
    --------
    >>> import numpy as np
    >>> csv_text(FaceDataset(np.zeros((1, 48, 48), np.uint8), labels=[4])).splitlines()[1][:5]
    '4,0 0'
    """
    return "emotion,pixels,Usage\n" + format_csv_rows(ds).decode()


__all__ = ["read_csv", "write_csv", "format_csv_rows", "csv_text"]
