"""The Kaggle CSV form of FER-2013: ``emotion,pixels,Usage``.

Variants read: the Kaggle ``fer2013.csv`` (``emotion,pixels,Usage``), files without the
``Usage`` column (every image goes to ``Training``), files without ``emotion`` (images are
unlabeled), and ``icml_face_data.csv`` (``emotion, Usage, pixels`` with leading spaces in
the header). Column order is taken from the header. The exact grammar of a row is in
``docs/formats.md``; both readers below implement it, and a row's answer never depends
on other rows.

How the fast reader works
-------------------------
A valid file is digits, single spaces and a little fixed text per row, so the reader does
not split strings. It memory-maps the file, cuts it into newline-aligned chunks of a few MB
and, in a thread per core (numpy releases the GIL), finds the last digit of every number
with two vectorised comparisons, gathers the up-to-three digits that end there, and turns
them into values. It then checks that the fields tile each row byte for byte: numbers
where the header puts them, one comma between fields, quotes only in pairs around a
field, Usage spelt exactly, one space between pixels, a line end right after the last
field. A chunk with anything else is handed to a careful row-by-row reader that names
the row and what is wrong (and applies ``on_bad``); the other chunks keep their fast
result, which is by construction what the careful reader would give.
"""

from __future__ import annotations

import mmap
import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ferclean._outputs import dataset_inputs, output_file
from ferclean._progress import Progress
from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, UNLABELED, FaceDataset
from ferclean.errors import BadInputError, BadInputWarning, BadRecords, check_on_bad

N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
_CHUNK_BYTES = 4 << 20
_KNOWN_COLUMNS = {"emotion": "emotion", "pixels": "pixels", "usage": "Usage"}
# Byte values after subtracting ord("0"), as the fast path sees them.
_NEWLINE = (10 - 48) % 256
_QUOTE = (34 - 48) % 256
_SPACE = (32 - 48) % 256
_COMMA = (44 - 48) % 256
_CR = (13 - 48) % 256
# A row is about 9 KB; a line over 1 MiB is refused without being read into memory.
_MAX_LINE_BYTES = 1 << 20
_MAX_HEADER_BYTES = 1 << 16
_MIN_ROW_BYTES = 2 * N_PIXELS - 1  # 2304 one-digit pixels and the spaces between them
_BLANK_TAIL = np.frombuffer(b" \t\r\n", np.uint8)  # ignored at the end of the file
_BLANKS = re.compile(rb"[ \t]+")
_SPLIT_CODES = {name.lower().encode(): code for code, name in enumerate(SPLITS)}


class _Anomaly(Exception):
    """Raised inside the fast path when the careful reader must take over a chunk."""


def read_csv(
    path: str | os.PathLike,
    *,
    on_bad: str = "raise",
    workers: int | None = None,
    progress: bool = False,
) -> FaceDataset:
    """Read a FER-2013 CSV (Kaggle, no-``Usage``, no-``emotion`` or ICML variant).

    What a valid row is, exactly, is in ``docs/formats.md`` ("Kaggle CSV input"); every
    row gets the same answer whichever reader parses it.

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
        A file with a header and no rows is an empty dataset.

    Raises
    ------
    BadInputError
        For a bad header (always) or a bad row (``on_bad="raise"``), naming file and row.

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
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():  # a folder, or a FIFO that would block the read
        raise BadInputError(
            str(path), None, "not a regular file; a CSV input must be a file (an image "
            "folder is read with --input-format folder (format='folder'))"
        )
    if path.stat().st_size == 0:
        raise BadInputError(str(path), None, "file is empty")
    bad = BadRecords(str(path), on_bad)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        columns, start = _parse_header(mm, path)
        end = _content_end(mm, start)
        parser = _RowParser(columns, on_bad)
        if end <= start:
            return _dataset(_no_pixels(), [], [], [], path, bad)
        body = np.frombuffer(mm, dtype=np.uint8, count=end - start, offset=start)
        try:
            fast = _read_fast(mm, body, start, columns, workers, progress)
        finally:
            del body  # release the buffer export so the mmap can close
        if fast is None:
            # No fast layout (extra columns) or far too many lines for the bytes: every row
            # goes through the careful reader.
            sink = _RowSink()
            for row, parsed in _careful_rows(mm, start, end, 0, parser, bad, progress):
                sink.add(row, parsed)
            return _dataset(*sink.arrays(), path, bad)
        # Chunks the fast path could not vouch for are read row by row, in file order, so
        # that under on_bad="raise" the first bad row of the file is the one reported.
        keep = np.ones(len(fast.pixels), np.bool_)
        for i in fast.failed:
            a, b = fast.bounds[i]
            rows = _careful_rows(mm, start + a, start + b, fast.offsets[i], parser, bad, False)
            for row, parsed in rows:
                if parsed is None:
                    keep[row] = False
                else:
                    fast.labels[row], fast.splits[row], fast.pixels[row] = parsed
    rows = np.flatnonzero(keep)
    if len(rows) == len(keep):
        return _dataset(fast.pixels, fast.labels, fast.splits, rows, path, bad)
    return _dataset(fast.pixels[rows], fast.labels[rows], fast.splits[rows], rows, path, bad)


def _no_pixels() -> np.ndarray:
    return np.zeros((0, N_PIXELS), np.uint8)


def _dataset(
    pixels: np.ndarray, labels, splits, rows, path: Path, bad: BadRecords
) -> FaceDataset:
    rows = np.asarray(rows, np.int64)
    return FaceDataset(
        pixels.reshape(len(pixels), IMAGE_SIZE, IMAGE_SIZE),
        labels=np.asarray(labels, np.int8),
        splits=np.asarray(splits, np.int8),
        ids=rows.astype(str),
        rows=rows,
        source=str(path),
        dropped=bad.finish(),
    )


def _show(value: bytes | str, limit: int = 40) -> str:
    """``repr`` of a value for a message, cut to ``limit`` characters (fields can be MBs)."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def _content_end(buf, start: int) -> int:
    """Offset just past the last byte that is not whitespace (blank tails are ignored).

    Scans backwards in blocks, so a file ending in gigabytes of blanks costs no memory.
    """
    end = len(buf)
    while end > start:
        a = max(start, end - 65536)
        block = np.frombuffer(buf, np.uint8, count=end - a, offset=a)
        solid = np.flatnonzero(~np.isin(block, _BLANK_TAIL))
        del block
        if len(solid):
            return a + int(solid[-1]) + 1
        end = a
    return start


# ------------------------------------------------------------------------- header
def _parse_header(buf, path: Path) -> tuple[list[str], int]:
    """Column names in file order, and the offset where the data rows start."""
    newline = buf.find(b"\n", 0, _MAX_HEADER_BYTES + 1)
    if newline < 0 and len(buf) > _MAX_HEADER_BYTES:
        start = bytes(buf[:60]).decode("utf-8-sig", errors="replace")
        raise BadInputError(
            str(path), "line 1", f"header is longer than {_MAX_HEADER_BYTES:,} bytes "
            f"(it starts {start!r}...); expected emotion,pixels,Usage"
        )
    body_start = len(buf) if newline < 0 else newline + 1
    text = bytes(buf[:body_start]).decode("utf-8-sig", errors="replace").strip()
    shown = _show(text, 120)
    if not text:
        raise BadInputError(str(path), "line 1", "header is empty; expected emotion,pixels,Usage")
    names = [c.strip().strip('"').strip() for c in text.split(",")]
    columns = [_KNOWN_COLUMNS.get(name.lower(), name) for name in names]
    if any(ch.isdigit() for ch in text) and "pixels" not in columns:
        raise BadInputError(
            str(path), "line 1", "no header row; expected a header such as emotion,pixels,Usage"
        )
    for known in _KNOWN_COLUMNS.values():
        if columns.count(known) > 1:
            raise BadInputError(
                str(path), "line 1",
                f"column {known!r} appears {columns.count(known)} times (header: {shown})",
            )
    if "pixels" not in columns:
        raise BadInputError(str(path), "line 1", f"missing column 'pixels' (header: {shown})")
    unknown = [c for c in columns if c not in _KNOWN_COLUMNS.values()]
    missing = [k for k in ("emotion", "Usage") if k not in columns]
    if unknown and missing:
        _check_unknown_columns(unknown, missing, shown, path)
    return columns, body_start


_MISSING_MEANS = {"emotion": "unlabeled", "Usage": "in Training"}


def _check_unknown_columns(
    unknown: list[str], missing: list[str], shown: str, path: Path
) -> None:
    """An unknown column beside a missing known one: an error if it looks like that one.

    ``émotion`` read with the wrong encoding, or ``emotions``, would otherwise silently
    make every image unlabeled; a column that looks like nothing known (``id``) is only
    ignored, with a warning.
    """
    for name in unknown:
        for known in missing:
            if len(name) <= 2 * len(known) and _edit_distance(name.lower(), known.lower()) <= 2:
                raise BadInputError(
                    str(path), "line 1",
                    f"column {_show(name)} looks like a misspelt or mis-encoded {known!r} "
                    f"(header: {shown}); rename it {known}: as it is, every image would be "
                    f"read {_MISSING_MEANS[known]}",
                )
    effects = "; ".join(f"no {k!r} column, so every image is read {_MISSING_MEANS[k]}"
                        for k in missing)
    warnings.warn(
        f"{path}: line 1: ignoring unknown column(s) {', '.join(map(_show, unknown))}; "
        f"{effects} (header: {shown})",
        BadInputWarning,
        stacklevel=4,
    )


def _edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (a handful of characters: plain dynamic programming)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


# ----------------------------------------------------------------------- fast path
class _FastResult:
    """Arrays for every line of the body; rows of ``failed`` chunks are still to be read."""

    def __init__(self, pixels, labels, splits, bounds, offsets, failed) -> None:
        self.pixels, self.labels, self.splits = pixels, labels, splits
        self.bounds, self.offsets, self.failed = bounds, offsets, failed


def _read_fast(
    buf, body: np.ndarray, start: int, columns: list[str], workers: int | None, progress: bool
) -> _FastResult | None:
    """Parse every chunk the fast way; ``None`` when the layout or size rules it out.

    ``buf`` is the whole file (for ``find``), ``body`` its data rows (``start`` onwards,
    blank tail removed).
    """
    if set(columns) - {"emotion", "pixels", "Usage"}:
        return None  # unknown extra columns: the careful reader handles them
    layout = _Layout(columns)
    bounds = _chunk_bounds(buf, start, start + len(body))
    n_workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        counts = list(pool.map(lambda b: _count_newlines(body, *b), bounds))
        # Every chunk but the last ends with its newline; the last has none (trimmed).
        rows_per_chunk = [c + (1 if i == len(bounds) - 1 else 0) for i, c in enumerate(counts)]
        offsets = np.concatenate([[0], np.cumsum(rows_per_chunk)]).astype(np.int64)
        n = int(offsets[-1])
        if n > len(body) // _MIN_ROW_BYTES + 1:
            return None  # mostly short lines: no room for the output arrays it would imply
        pixels = np.empty((n, N_PIXELS), np.uint8)
        labels = np.full(n, UNLABELED, np.int8)
        splits = np.zeros(n, np.int8)
        failed = []
        bar = Progress(len(bounds), "reading CSV", enabled=progress)

        def work(i: int) -> None:
            a, b = bounds[i]
            r0, r1 = int(offsets[i]), int(offsets[i + 1])
            try:
                if b - a > _CHUNK_BYTES + _MAX_LINE_BYTES:
                    raise _Anomaly  # a line longer than any row: do not build buffers for it
                _parse_chunk(body[a:b], layout, pixels[r0:r1], labels[r0:r1], splits[r0:r1])
            except _Anomaly:
                failed.append(i)
            bar.update()

        try:
            list(pool.map(work, range(len(bounds))))
        finally:
            bar.close()
    return _FastResult(pixels, labels, splits, bounds, offsets, sorted(failed))


class _Layout:
    """Which token of a row is the label and which are pixels, from the header order."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.has_label = "emotion" in columns
        self.has_usage = "Usage" in columns
        digit_cols = [c for c in columns if c in ("emotion", "pixels")]
        self.tokens = N_PIXELS + int(self.has_label)
        # Token index of the emotion number and of the first pixel within a row.
        self.label_token = 0 if digit_cols[0] == "emotion" else N_PIXELS
        self.pixel_token = 1 if self.has_label and self.label_token == 0 else 0


def _chunk_bounds(buf, start: int, end: int) -> list[tuple[int, int]]:
    """Newline-aligned chunks of about ``_CHUNK_BYTES``, relative to ``start``."""
    bounds = []
    a = start
    while a < end:
        b = a + _CHUNK_BYTES
        if b >= end:
            b = end
        else:
            k = buf.find(b"\n", b, end)  # however long the line is: no copy, no cap
            b = end if k < 0 else k + 1
        bounds.append((a - start, b - start))
        a = b
    return bounds


def _count_newlines(body: np.ndarray, a: int, b: int) -> int:
    return sum(
        int(np.count_nonzero(body[i : min(b, i + _CHUNK_BYTES)] == 10))
        for i in range(a, b, _CHUNK_BYTES)
    )


_PATTERNS = [(code, np.frombuffer(name.lower().encode(), np.uint8)) for code, name in
             enumerate(SPLITS)]
_USAGE_WIDTH = max(len(s) for s in SPLITS)


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
    """Parse whole rows, or raise :class:`_Anomaly` if any byte is not as a clean row has it.

    Accepts exactly: fields in header order joined by commas, each optionally inside one
    pair of double quotes; the label 1-3 ASCII digits worth 0..6; 2304 pixels of 1-3 ASCII
    digits worth 0..255 with one space between; Usage a split name (ASCII case-insensitive);
    ``\\n`` or ``\\r\\n`` line ends. Every such row is one the careful reader accepts with
    the same values (the differential test in ``tests/io/test_csv_fuzz.py`` checks it).
    """
    n = len(chunk)
    rows = len(out_pixels)
    if n < rows * _MIN_ROW_BYTES:
        raise _Anomaly
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

    def gather(source: np.ndarray, name: str) -> np.ndarray:
        return np.take(source, pos, out=_buffer(name, m, source.dtype))

    ones, tens, hundreds = gather(d[4:], "g0"), gather(d[3:], "g1"), gather(d[2:], "g2")
    has_tens = np.less(tens, 10, out=_buffer("m1", m, np.bool_))
    has_hundreds = np.less(hundreds, 10, out=_buffer("m2", m, np.bool_))
    has_hundreds &= has_tens
    # Numbers are maximal runs of digits, so every digit is counted by some number; the
    # counts match only if no number has four or more digits.
    n_digits = int(np.count_nonzero(is_digit))
    if n_digits != m + np.count_nonzero(has_tens) + np.count_nonzero(has_hundreds):
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
    codes = _check_rows(d, n, pos, has_tens, has_hundreds, n_digits, layout, rows)
    p0 = layout.pixel_token
    out_pixels[:] = values[:, p0 : p0 + N_PIXELS]
    if layout.has_label:
        lab = values[:, layout.label_token]
        if np.any(lab >= len(EMOTIONS)):
            raise _Anomaly
        out_labels[:] = lab
    if layout.has_usage:
        out_splits[:] = codes


def _check_rows(
    d: np.ndarray,
    n: int,
    pos: np.ndarray,
    has_tens: np.ndarray,
    has_hundreds: np.ndarray,
    n_digits: int,
    layout: _Layout,
    rows: int,
) -> np.ndarray | None:
    """Check that the fields tile every row byte for byte; return the Usage codes.

    Each field's span (optional quotes included) is found from its numbers, or for Usage
    from its neighbour; consecutive fields must be one comma apart, every row must end in
    ``\\n`` or ``\\r\\n`` right after its last field, and each row must start where the
    previous one ended. Nothing outside the fields is then left unchecked.
    """
    t_count = layout.tokens
    last = pos.reshape(rows, t_count)
    ht = has_tens.reshape(rows, t_count)
    hh = has_hundreds.reshape(rows, t_count)

    def span(t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        # Content [s, e) in d: first digit of number t0 to just past the last of t1.
        return last[:, t0] + 4 - ht[:, t0] - hh[:, t0], last[:, t1] + 5

    starts: dict[str, np.ndarray] = {}
    stops: dict[str, np.ndarray] = {}
    pixel_bytes = 0
    for col in layout.columns:
        if col == "Usage":
            continue
        if col == "emotion":
            s, e = span(layout.label_token, layout.label_token)
        else:
            s, e = span(layout.pixel_token, layout.pixel_token + N_PIXELS - 1)
            pixel_bytes = int((e - s).sum())
        quoted = d[s - 1] == _QUOTE
        if not np.array_equal(quoted, d[e] == _QUOTE):
            raise _Anomaly
        starts[col], stops[col] = s - quoted, e + quoted
    # Inside the pixel field, between 2304 numbers, exactly 2303 bytes are not digits; and
    # all spaces of the chunk are there (the tiling below leaves none anywhere else).
    label_digits = 0
    if layout.has_label:
        t = layout.label_token
        label_digits = rows + int(np.count_nonzero(ht[:, t])) + int(np.count_nonzero(hh[:, t]))
    gaps = rows * (N_PIXELS - 1)
    if pixel_bytes - (n_digits - label_digits) != gaps:
        raise _Anomaly
    if np.count_nonzero(np.equal(d[4 : 4 + n], _SPACE, out=_buffer("sp", n, np.bool_))) != gaps:
        raise _Anomaly
    codes = None
    if layout.has_usage:
        codes = _usage_span(d, layout.columns, starts, stops)
    cols = layout.columns
    for left, right in zip(cols, cols[1:], strict=False):
        if not (np.all(d[stops[left]] == _COMMA) and np.array_equal(starts[right],
                                                                     stops[left] + 1)):
            raise _Anomaly
    line_end = stops[cols[-1]]
    line_end = line_end + (d[line_end] == _CR)
    first = starts[cols[0]]
    if not (
        np.all(d[line_end] == _NEWLINE)
        and first[0] == 4
        and np.array_equal(first[1:], line_end[:-1] + 1)
        and line_end[-1] >= n + 3  # the chunk's last newline, or the padding after it
    ):
        raise _Anomaly
    return codes


def _usage_span(
    d: np.ndarray, columns: list[str], starts: dict, stops: dict
) -> np.ndarray:
    """Find the Usage field next to a numeric neighbour; fill its span; return its codes."""
    i = columns.index("Usage")
    width = _USAGE_WIDTH
    if i > 0:  # anchored after the field on its left and its comma
        field = stops[columns[i - 1]] + 1
        quoted = d[field] == _QUOTE
        text = field + quoted
        idx = text[:, None] + np.arange(width)
    else:  # first column: anchored before the field on its right and its comma
        field_end = starts[columns[1]] - 1
        quoted = d[field_end - 1] == _QUOTE
        text_end = field_end - quoted
        idx = text_end[:, None] - width + np.arange(width)
    window = d[np.clip(idx, 0, len(d) - 1)] + np.uint8(48)  # back to ASCII
    window |= np.uint8(0x20)  # ASCII case-fold: for letters exactly, others cannot match
    codes = np.full(len(idx), -1, np.int8)
    length = np.zeros(len(idx), np.int64)
    for code, pattern in _PATTERNS:
        k = len(pattern)
        seg = window[:, :k] if i > 0 else window[:, width - k :]
        hit = np.all(seg == pattern, axis=1)
        codes[hit] = code
        length[hit] = k
    if np.any(codes < 0):
        raise _Anomaly
    if i > 0:
        text_end = text + length
        if not np.array_equal(d[text_end] == _QUOTE, quoted):
            raise _Anomaly
        starts["Usage"], stops["Usage"] = field, text_end + quoted
    else:
        text_start = text_end - length
        if not np.array_equal(d[text_start - 1] == _QUOTE, quoted):
            raise _Anomaly
        starts["Usage"], stops["Usage"] = text_start - quoted, field_end
    return codes


# -------------------------------------------------------------------- careful path
class _RowParser:
    """Parse one line as the documented grammar says; slow, but names what is wrong."""

    def __init__(self, columns: list[str], on_bad: str) -> None:
        self.n_fields = len(columns)
        self.i_pix = columns.index("pixels")
        self.i_lab = columns.index("emotion") if "emotion" in columns else None
        self.i_use = columns.index("Usage") if "Usage" in columns else None
        self.fields_expected = f"expected {len(columns)} fields ({','.join(columns)})"
        self.hint = (
            "; --on-bad skip (on_bad='skip') drops bad rows instead"
            if on_bad == "raise" else ""
        )

    def __call__(self, line: bytes) -> tuple[int, int, np.ndarray] | str:
        """``(label, split, pixels)`` for a good row, else the reason it is bad."""
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip(b" \t"):
            return "blank line"
        fields = line.split(b",")
        if len(fields) != self.n_fields:
            return f"{self.fields_expected}, found {len(fields)}"
        label = UNLABELED
        if self.i_lab is not None:
            text = _unquote(fields[self.i_lab])
            # Leading zeros are allowed; int() is given at most one digit (it refuses
            # strings of over 4,300 digits).
            digit = text.lstrip(b"0") or b"0"
            if not (text.isdigit() and len(digit) == 1 and int(digit) < len(EMOTIONS)):
                return f"unknown label {_show(text)}; expected an integer 0..6"
            label = int(digit)
        split = 0
        if self.i_use is not None:
            text = _unquote(fields[self.i_use])
            split = _SPLIT_CODES.get(text.lower(), -1)
            if split < 0:
                return f"unknown Usage {_show(text)}; expected one of {', '.join(SPLITS)}"
        pixels = _parse_pixels(_unquote(fields[self.i_pix]))
        if isinstance(pixels, str):
            return pixels
        return label, split, pixels


def _unquote(field: bytes) -> bytes:
    """A field without surrounding spaces/tabs and one pair of enclosing double quotes."""
    field = field.strip(b" \t")
    if len(field) >= 2 and field[0] == 34 and field[-1] == 34:
        field = field[1:-1].strip(b" \t")
    return field


def _parse_pixels(text: bytes) -> np.ndarray | str:
    junk = text.translate(None, b"0123456789 \t")
    if not junk:
        # Only digits, spaces and tabs: numpy's C parser splits on the runs of blanks.
        values = np.fromstring(text, dtype=np.int64, sep=" ")
        if len(values) == N_PIXELS and values.max() <= 255:
            return values.astype(np.uint8)
    tokens = [t for t in _BLANKS.split(text) if t]
    if len(tokens) != N_PIXELS:
        return f"expected {N_PIXELS} pixel values, found {len(tokens)}"
    k = next(i for i, t in enumerate(tokens) if not _is_pixel(t))
    return f"pixel {k} is {_show(tokens[k])}, not an integer in 0..255"


def _is_pixel(token: bytes) -> bool:
    digits = token.lstrip(b"0") or b"0"
    return token.isdigit() and len(digits) <= 3 and int(digits) <= 255


class _RowSink:
    """Accepted rows collected in file order (for the whole-file careful read)."""

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.labels: list[int] = []
        self.splits: list[int] = []
        self.pixels: list[np.ndarray] = []

    def add(self, row: int, parsed: tuple[int, int, np.ndarray] | None) -> None:
        if parsed is not None:
            self.rows.append(row)
            self.labels.append(parsed[0])
            self.splits.append(parsed[1])
            self.pixels.append(parsed[2])

    def arrays(self) -> tuple[np.ndarray, list[int], list[int], list[int]]:
        pixels = np.stack(self.pixels) if self.pixels else _no_pixels()
        return pixels, self.labels, self.splits, self.rows


def _careful_rows(
    buf, a: int, b: int, first_row: int, parser: _RowParser, bad: BadRecords, progress: bool
):
    """Yield ``(row, (label, split, pixels))`` or ``(row, None)`` for each line in [a, b).

    Bad rows go to ``bad`` (which raises under ``on_bad="raise"``). Lines are found with
    ``find`` and one longer than ``_MAX_LINE_BYTES`` is refused without being copied, so a
    10 MB or 2 GB line costs no memory.
    """
    row = first_row
    # Progress in MB: rows are counted only as they are read.
    bar = Progress(max(1, (b - a) >> 20), "reading CSV row by row (MB)", enabled=progress)
    shown = a
    try:
        while a < b:
            newline = buf.find(b"\n", a, b)
            stop = b if newline < 0 else newline
            where = f"row {row} (line {row + 2})"
            if stop - a > _MAX_LINE_BYTES:
                parsed: tuple | str = (
                    f"line is {stop - a:,} bytes long, more than the {_MAX_LINE_BYTES:,} a "
                    f"row may have (a FER-2013 row has about 9,000)"
                )
            else:
                parsed = parser(bytes(buf[a:stop]))
            if isinstance(parsed, str):
                bad.add(where, parsed + parser.hint)
                yield row, None
            else:
                yield row, parsed
            row += 1
            a = stop + 1
            if a - shown >= 1 << 20:
                bar.update((a - shown) >> 20)
                shown += (a - shown) >> 20 << 20
    finally:
        bar.close()


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
    ds: FaceDataset, path: str | os.PathLike, *, usage: bool = True, overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a dataset as a Kaggle CSV (``emotion,pixels,Usage``), atomically. Lossless.

    Parameters
    ----------
    ds : FaceDataset
    path : path-like
        Output file; refused if it exists unless ``overwrite=True``, and always if it is
        the file ``ds`` was read from (see :mod:`ferclean._outputs`).
    usage : bool, default=True
        Write the ``Usage`` column.
    overwrite : bool, default=False
    progress : bool, default=False
        Show a progress bar on stderr (FER-2013 takes some seconds).

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
    with output_file(path, inputs=dataset_inputs(ds), overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh, Progress(len(ds), f"write {path.name}",
                                             enabled=progress) as bar:
            fh.write(header)
            for start in range(0, len(ds), _WRITE_ROWS):
                part = ds.subset(slice(start, start + _WRITE_ROWS))
                fh.write(format_csv_rows(part, usage=usage))
                bar.update(len(part))
    return path


_WRITE_ROWS = 4096  # rows formatted at a time: the bar moves, the buffer stays small


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
