"""FER+ votes (``fer2013new.csv``) as a reference for FER-2013's labels.

FER+ (Barsoum et al., 2016; MIT licence) had 10 annotators vote on every image of the
original Kaggle ``fer2013.csv``. Its file has one row per row of that CSV, in the same
order, and no pixels::

    Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF
    Training,fer0000000.png,4,0,0,1,3,2,0,0,0,0

The only link between a FER+ row and an image is its position, so the votes align with a
dataset read from the Kaggle CSV (whose ``rows`` are its data rows in file order) and with
nothing else: the image-folder form (``train/<emotion>/*.jpg``) lists the same photos in
another order. :func:`align_ferplus` checks the row count and every row's Usage before it
hands out votes.

Seven of FER+'s ten columns are FER-2013's classes under other names; they are mapped to
ferclean's order (:data:`ferclean.dataset.EMOTIONS`): anger -> angry, disgust -> disgust,
fear -> fear, happiness -> happy, sadness -> sad, surprise -> surprise, neutral -> neutral.
``contempt`` (not a FER-2013 class), ``unknown`` and ``NF`` (not a face) are kept apart.
The rules that turn votes into a reference label (:attr:`FerPlusVotes.majority`) and a
non-face flag (:attr:`FerPlusVotes.is_not_face`) are documented there and in
``docs/ferplus.md``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._validation import check_dataset
from ferclean.dataset import EMOTIONS, SPLITS, UNLABELED, FaceDataset
from ferclean.errors import BadInputError

#: FER+'s vote columns, in the order of ``fer2013new.csv``.
FERPLUS_VOTE_COLUMNS: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
    "unknown", "NF",
)
#: The FER+ column that holds each FER-2013 class's votes, in ferclean's class order.
FERPLUS_CLASS_COLUMNS: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral",
)
FERPLUS_COLUMNS: tuple[str, ...] = ("Usage", "Image name", *FERPLUS_VOTE_COLUMNS)

# The real file is 1.6 MB (35,887 rows of ~45 bytes). A file or a header far beyond that
# is not FER+; refusing it before reading keeps memory bounded whatever the file holds.
_MAX_FILE_BYTES = 16 << 20
_MAX_LINE_BYTES = 64 << 10
_FAST_LINE_BYTES = 128  # longer lines go to the careful reader; FER+'s are under 70
_MAX_VOTE_DIGITS = 9  # a count fits int32; int() is never handed a huge digit string
_SHOW = 40  # characters of a bad value shown in a message
_SPLIT_CODES = {name.lower(): code for code, name in enumerate(SPLITS)}
_ALIGN_HINT = (
    "FER+ aligns only with the original Kaggle fer2013.csv, row for row in its order, not "
    "with the image-folder or zip form of FER-2013 (train/<emotion>/*.jpg), which lists the "
    "images in another order"
)


def _read_only(values: Any, dtype: Any, name: str) -> np.ndarray:
    given = np.asarray(values)
    if dtype is not object and given.dtype.kind not in "iu" and given.size:
        if given.dtype.kind != "f" or not np.all(given == np.rint(given)):
            raise TypeError(f"{name} must be integers; got {given.dtype} values")
    arr = np.array(given, dtype=dtype)  # a copy: the votes never share memory with input
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class FerPlusVotes:
    """FER+ votes for a run of FER-2013 images, with FER-2013's classes in ferclean's order.

    Built by :func:`read_ferplus` (one entry per row of the FER+ file) and
    :func:`align_ferplus` (one entry per image of a dataset). The arrays are read-only.

    Parameters
    ----------
    votes : array-like of int, shape (n, 7)
        Votes for each FER-2013 class, columns in :data:`ferclean.dataset.EMOTIONS` order.
    contempt, unknown, not_face : array-like of int, shape (n,)
        Votes for FER+'s extra classes ``contempt``, ``unknown`` and ``NF``.
    usage : array-like of int, shape (n,)
        FER+'s ``Usage`` per entry, as codes into :data:`ferclean.dataset.SPLITS`.
    image_names : array-like of str, shape (n,)
        FER+'s ``Image name`` (``""`` where FER+ left it empty: images it dropped).
    rows : array-like of int, shape (n,)
        0-based data row of each entry in the FER+ file (line ``row + 2``).
    source : str, default=None
        The FER+ file, for messages.

    Examples
    --------
    >>> v = FerPlusVotes(votes=[[0, 0, 0, 8, 0, 0, 2]], contempt=[0], unknown=[0],
    ...                  not_face=[0], usage=[0], image_names=["fer0000000.png"], rows=[0])
    >>> v.majority.tolist(), v.distribution.round(1).tolist()
    ([3], [[0.0, 0.0, 0.0, 0.8, 0.0, 0.0, 0.2]])
    """

    votes: np.ndarray
    contempt: np.ndarray
    unknown: np.ndarray
    not_face: np.ndarray
    usage: np.ndarray
    image_names: np.ndarray
    rows: np.ndarray
    source: str | None = field(default=None)

    def __post_init__(self) -> None:
        votes = _read_only(self.votes, np.int32, "votes")
        if votes.ndim != 2 or votes.shape[1] != len(EMOTIONS):
            raise ValueError(f"votes must have shape (n, {len(EMOTIONS)}); got {votes.shape}")
        n = votes.shape[0]
        arrays = {
            "votes": votes,
            "contempt": _read_only(self.contempt, np.int32, "contempt"),
            "unknown": _read_only(self.unknown, np.int32, "unknown"),
            "not_face": _read_only(self.not_face, np.int32, "not_face"),
            "usage": _read_only(self.usage, np.int8, "usage"),
            "image_names": _read_only(self.image_names, object, "image_names"),
            "rows": _read_only(self.rows, np.int64, "rows"),
        }
        for name, arr in arrays.items():
            if arr.shape[:1] != (n,) or (name != "votes" and arr.ndim != 1):
                raise ValueError(f"{name} must have shape ({n},); got {arr.shape}")
            object.__setattr__(self, name, arr)  # frozen: set once, here
        counts = (votes, self.contempt, self.unknown, self.not_face)
        if any(c.size and c.min() < 0 for c in counts):
            raise ValueError("vote counts must be >= 0")
        if n and (self.usage.min() < 0 or self.usage.max() >= len(SPLITS)):
            raise ValueError(f"usage codes must lie in 0..{len(SPLITS) - 1}")

    def __len__(self) -> int:
        return int(self.votes.shape[0])

    def __repr__(self) -> str:
        src = f", source={self.source!r}" if self.source else ""
        return f"FerPlusVotes(n_images={len(self)}{src})"

    # ------------------------------------------------------------------ derived
    @property
    def usage_names(self) -> np.ndarray:
        """FER+'s Usage of every entry, as split names."""
        return np.asarray(SPLITS, dtype=object)[self.usage]

    @property
    def n_votes(self) -> np.ndarray:
        """Votes cast for each entry over all ten FER+ columns (10 in FER+, once 9)."""
        return (self.votes.sum(axis=1) + self.contempt + self.unknown
                + self.not_face).astype(np.int64)

    @property
    def has_image(self) -> np.ndarray:
        """True where FER+ names an image; FER+ left the name empty for images it dropped."""
        return self.image_names != ""

    @property
    def majority(self) -> np.ndarray:
        """The FER-2013 class the annotators chose, or ``-1`` where FER+ names none.

        The rule: let ``best`` be the class with the most votes among FER-2013's seven.
        Its id is the majority when (1) no other of the seven has as many votes and (2)
        it has more votes than ``contempt``, ``unknown`` and ``NF`` together; otherwise
        ``-1``. ``contempt``, ``unknown`` and ``NF`` are all answers outside FER-2013's
        classes, so when they together match the best class the annotators did not pick a
        FER-2013 label; a tie, there as among the seven, names no class. A row where NF
        has at least half of the votes (:attr:`is_not_face`) therefore never has a
        majority. FER+'s own "majority" training mode ignores single votes, then needs
        more than half of the rest: on the real file it names a FER-2013 class for
        31,264 images against this rule's 33,315, the same class wherever both name one
        (``docs/ferplus.md``).

        Examples
        --------
        >>> v = FerPlusVotes(votes=[[0, 0, 0, 5, 0, 0, 0], [0, 0, 0, 4, 4, 0, 2],
        ...                         [0, 0, 0, 4, 0, 0, 0]],
        ...                  contempt=[1, 0, 2], unknown=[1, 0, 1], not_face=[2, 0, 3],
        ...                  usage=[0, 0, 0], image_names=["a", "b", "c"], rows=[0, 1, 2])
        >>> v.majority.tolist()  # 5 > 1+1+2; a tie 4-4; 4 < 2+1+3
        [3, -1, -1]
        """
        best = self.votes.max(axis=1, initial=0)
        unique = (self.votes == best[:, None]).sum(axis=1) == 1
        outvoted = best <= self.contempt + self.unknown + self.not_face
        return np.where(unique & ~outvoted, self.votes.argmax(axis=1), UNLABELED).astype(
            np.int8)

    @property
    def is_not_face(self) -> np.ndarray:
        """True where at least half of an entry's votes say it is not a face (``NF``).

        Half rather than the plurality: with ten votes over ten columns a plurality can
        be two or three votes, too few to call an image a non-face. On the real file
        the two rules differ by one image (176 against 177); all 173 images FER+ dropped
        have 10 NF votes.

        Examples
        --------
        >>> v = FerPlusVotes(votes=[[0, 0, 0, 5, 0, 0, 0], [0, 0, 0, 4, 0, 0, 0]],
        ...                  contempt=[0, 0], unknown=[0, 2], not_face=[5, 4],
        ...                  usage=[0, 0], image_names=["a", "b"], rows=[0, 1])
        >>> v.is_not_face.tolist()
        [True, False]
        """
        total = self.n_votes
        return (total > 0) & (2 * self.not_face.astype(np.int64) >= total)

    @property
    def distribution(self) -> np.ndarray:
        """Each entry's votes over FER-2013's seven classes as shares summing to 1.

        ``contempt``, ``unknown`` and ``NF`` votes are left out (FER+'s own probability
        targets drop ``unknown`` and ``NF`` the same way); an entry without a vote for any
        of the seven (every image FER+ dropped) is a row of zeros.

        Examples
        --------
        >>> v = FerPlusVotes(votes=[[1, 0, 0, 3, 0, 0, 0], [0] * 7], contempt=[0, 0],
        ...                  unknown=[6, 0], not_face=[0, 10], usage=[0, 0],
        ...                  image_names=["a", ""], rows=[0, 1])
        >>> v.distribution.tolist()
        [[0.25, 0.0, 0.0, 0.75, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]
        """
        totals = self.votes.sum(axis=1, keepdims=True)
        return np.divide(self.votes, totals, out=np.zeros(self.votes.shape),
                         where=totals > 0)

    # ------------------------------------------------------------------ subsets
    def subset(self, index: Any) -> FerPlusVotes:
        """The entries selected by a boolean mask or an index array (``rows`` kept).

        Examples
        --------
        >>> v = FerPlusVotes(votes=[[0, 0, 0, 5, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0]],
        ...                  contempt=[0, 0], unknown=[0, 0], not_face=[0, 0],
        ...                  usage=[0, 1], image_names=["a", "b"], rows=[0, 1])
        >>> v.subset([1]).majority.tolist(), v.subset([1]).rows.tolist()
        ([0], [1])
        """
        index = np.asarray(index)
        n = len(self)
        if index.dtype == bool:
            if index.shape != (n,):
                raise IndexError(f"a boolean mask must have shape ({n},); got {index.shape}")
        elif index.dtype.kind not in "iu":
            raise IndexError(f"index must be integers or a boolean mask; got {index.dtype}")
        elif index.size and (index.min() < -n or index.max() >= n):
            bad = index[(index < -n) | (index >= n)][0]
            raise IndexError(f"index {int(bad)} is out of range for {n} FER+ entries")
        return FerPlusVotes(
            votes=self.votes[index], contempt=self.contempt[index],
            unknown=self.unknown[index], not_face=self.not_face[index],
            usage=self.usage[index], image_names=self.image_names[index],
            rows=self.rows[index], source=self.source,
        )

    def __getitem__(self, index: Any) -> FerPlusVotes:
        return self.subset(index)

    def to_frame(self) -> pd.DataFrame:
        """One row per entry: ``row``, ``usage``, ``image_name``, the seven classes' votes
        (ferclean's names), ``contempt``, ``unknown``, ``not_face``, ``majority`` and
        ``is_not_face``.

        Examples
        --------
        >>> v = FerPlusVotes(votes=[[0, 0, 0, 5, 0, 0, 0]], contempt=[0], unknown=[0],
        ...                  not_face=[0], usage=[2], image_names=["a"], rows=[7])
        >>> v.to_frame()[["row", "usage", "happy", "majority"]].values.tolist()
        [[7, 'PrivateTest', 5, 3]]
        """
        frame = pd.DataFrame({"row": self.rows, "usage": self.usage_names,
                              "image_name": self.image_names})
        for k, name in enumerate(EMOTIONS):
            frame[name] = self.votes[:, k]
        frame["contempt"] = self.contempt
        frame["unknown"] = self.unknown
        frame["not_face"] = self.not_face
        frame["majority"] = self.majority
        frame["is_not_face"] = self.is_not_face
        return frame


# ------------------------------------------------------------------------- reading
def read_ferplus(path: str | os.PathLike) -> FerPlusVotes:
    """Read FER+'s ``fer2013new.csv``.

    The grammar follows the Kaggle CSV's (``docs/formats.md``): UTF-8 (a byte-order mark
    is allowed), lines ending in ``\\n`` or ``\\r\\n``, fields split at commas, spaces,
    tabs and one pair of double quotes around a field ignored. The header must name the
    twelve FER+ columns (case-insensitively, in any order) and nothing else. ``Usage`` is
    ``Training``, ``PublicTest`` or ``PrivateTest`` in any ASCII case; votes are plain
    ASCII digits. ``Image name`` may be empty (FER+ dropped those images). Every row
    counts: the votes are tied to images by position only, so a bad row is an error,
    never skipped. Files over 16 MiB are refused before reading (FER+'s is 1.6 MB).

    Parameters
    ----------
    path : path-like
        The FER+ file.

    Returns
    -------
    FerPlusVotes
        One entry per data row, in file order (``rows`` is ``0..n-1``).

    Raises
    ------
    BadInputError
        Naming the file and the row (``row R (line R+2)``) at fault: a bad header, a row
        with the wrong number of fields, a vote that is not a non-negative integer, an
        unknown Usage, a blank line between rows, bytes that are not UTF-8.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "fer2013new.csv"
    >>> _ = p.write_text(
    ...     "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,"
    ...     "contempt,unknown,NF\\nTraining,fer0000000.png,4,0,0,1,3,2,0,0,0,0\\n")
    >>> v = read_ferplus(p)
    >>> v.votes.tolist(), v.majority.tolist()
    ([[3, 2, 0, 0, 1, 0, 4]], [6])
    """
    path = Path(path)
    source = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block the read
            raise BadInputError(source, None, "not a regular file")
        size = info.st_size
        if size > _MAX_FILE_BYTES:
            raise BadInputError(source, None, f"file is {size:,} bytes, more than the "
                                f"{_MAX_FILE_BYTES:,} a FER+ file may have (FER+'s is about "
                                f"1.6 MB); is this fer2013new.csv?")
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(source, None, f"cannot read the file: {exc.strerror or exc}") \
            from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # "\r\n" occurs only at line ends, so this is what stripping one "\r" per line does.
    text = data.replace(b"\r\n", b"\n").rstrip(b" \t\r\n")
    lines = text.split(b"\n")
    if not lines[0].strip(b" \t\r"):
        what = "empty file" if not text else "line 1 is blank"
        raise BadInputError(source, None, f"{what}; expected FER+'s header "
                            f"{','.join(FERPLUS_COLUMNS)}")
    order = _header_order(source, lines[0])
    body = lines[1:]
    rest = text[len(lines[0]) + 1:]  # the rows, for the fast reader's cleanliness check
    parsed = _parse_fast(body, rest, order, clean=_is_clean(rest))
    if parsed is None:  # something unusual: the careful reader names the row at fault
        parsed = _parse_careful(source, body, order)
    usage, names, table = parsed
    column = {name: table[:, k] for k, name in enumerate(FERPLUS_VOTE_COLUMNS)}
    return FerPlusVotes(
        votes=np.stack([column[c] for c in FERPLUS_CLASS_COLUMNS], axis=1),
        contempt=column["contempt"], unknown=column["unknown"], not_face=column["NF"],
        usage=usage, image_names=names, rows=np.arange(len(body)), source=source,
    )


def _is_clean(rows: bytes) -> bool:
    """No quote, space, tab or ``\\r`` in the rows: nothing for the careful reader to strip."""
    return not any(c in rows for c in (b'"', b" ", b"\t", b"\r"))


def _parse_fast(
    body: list[bytes], rows: bytes, order: list[int], *, clean: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Usage codes, names and the vote table of a file of clean rows, whole columns at a
    time; ``None`` as soon as anything is unusual (the careful reader then decides).

    Clean means: no quote, space, tab or ``\\r`` in any row, every line has exactly the
    header's fields, every vote is 1..9 ASCII digits, every Usage is known and the names
    are UTF-8. On such rows :func:`_parse_careful` gives this same answer.
    """
    n_fields, n = len(FERPLUS_COLUMNS), len(body)
    if not clean or max(map(len, body), default=0) > _FAST_LINE_BYTES:
        return None
    if any(line.count(b",") != n_fields - 1 for line in body):
        return None
    # Every row has n_fields fields, so the file's fields in one list are a table whose
    # columns are slices: no per-row Python work below.
    cells = rows.replace(b"\n", b",").split(b",") if n else []
    columns = [cells[i::n_fields] for i in order]
    for col in columns[2:]:
        lengths = list(map(len, col))
        # bytes.isdigit is ASCII-only, unlike str.isdigit
        if n and not (min(lengths) >= 1 and max(lengths) <= _MAX_VOTE_DIGITS
                      and b"".join(col).isdigit()):
            return None
    codes = {name.encode(): code for name, code in _SPLIT_CODES.items()}
    usage = np.fromiter((codes.get(u, -1) for u in map(bytes.lower, columns[0])), np.int8,
                        count=n)
    if np.any(usage < 0):
        return None
    try:  # no name holds a newline, so one decode serves them all
        names = np.array(b"\n".join(columns[1]).decode("utf-8").split("\n")[:n], dtype=object)
    except UnicodeDecodeError:
        return None
    table = np.zeros((n, len(FERPLUS_VOTE_COLUMNS)), np.int32)
    for k, col in enumerate(columns[2:]):
        if n:  # digits and single spaces only: numpy's C parser reads them exactly
            table[:, k] = np.fromstring(b" ".join(col), dtype=np.int64, sep=" ")
    return usage, names, table


def _parse_careful(
    source: str, body: list[bytes], order: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row by row; raises :class:`BadInputError` at the first bad row, naming it."""
    n = len(body)
    table = np.zeros((n, len(FERPLUS_VOTE_COLUMNS)), np.int32)
    usage = np.zeros(n, np.int8)
    names = np.empty(n, dtype=object)
    i_usage, i_name = order[0], order[1]
    for row, line in enumerate(body):
        fields = _row_fields(source, row, line, len(FERPLUS_COLUMNS))
        text = fields[i_usage]
        code = _SPLIT_CODES.get(text.lower(), -1) if text.isascii() else -1
        if code < 0:
            raise BadInputError(source, _where(row), f"unknown Usage {_show(text)}; expected "
                                f"one of {', '.join(SPLITS)}")
        usage[row] = code
        names[row] = fields[i_name]
        for k, i in enumerate(order[2:]):
            table[row, k] = _vote(source, row, FERPLUS_VOTE_COLUMNS[k], fields[i])
    return usage, names, table


def _where(row: int) -> str:
    return f"row {row} (line {row + 2})"


def _show(text: str) -> str:
    return repr(text if len(text) <= _SHOW else text[:_SHOW] + "...")


def _decode(source: str, line: bytes, where: str) -> str:
    if len(line) > _MAX_LINE_BYTES:
        raise BadInputError(source, where, f"line is {len(line):,} bytes long, more than the "
                            f"{_MAX_LINE_BYTES:,} a FER+ line may have (FER+'s are under 100)")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputError(source, where, f"byte {exc.start} is not UTF-8 text") from None


def _unquote(text: str) -> str:
    text = text.strip(" \t")
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip(" \t")
    return text


def _header_order(source: str, line: bytes) -> list[int]:
    """Position of each of :data:`FERPLUS_COLUMNS` in the header, or an error showing it."""
    text = _decode(source, line, "header").rstrip("\r")
    found = [_unquote(name) for name in text.split(",")]
    keys = [name.lower() for name in found]
    shown = text if len(text) <= 120 else text[:120] + "..."
    problems = []
    for name in FERPLUS_COLUMNS:
        count = keys.count(name.lower())
        if count != 1:
            problems.append(f"{'no' if count == 0 else f'{count} columns'} {name!r}")
    known = {name.lower() for name in FERPLUS_COLUMNS}
    extra = [name for name in found if name.lower() not in known]
    if extra:
        problems.append("unknown column" + ("s " if len(extra) > 1 else " ")
                        + ", ".join(_show(e) for e in extra[:5]))
    if problems:
        raise BadInputError(source, "header", f"not FER+'s header ({'; '.join(problems)}); "
                            f"expected {','.join(FERPLUS_COLUMNS)}, found {shown!r}")
    return [keys.index(name.lower()) for name in FERPLUS_COLUMNS]


def _row_fields(source: str, row: int, line: bytes, n_fields: int) -> list[str]:
    where = _where(row)
    text = _decode(source, line, where).rstrip("\r")
    if not text.strip(" \t"):
        raise BadInputError(source, where, "blank line (every FER+ row stands for one image "
                            "of fer2013.csv, so none may be missing)")
    fields = text.split(",")
    if len(fields) != n_fields:
        raise BadInputError(source, where, f"expected {n_fields} fields "
                            f"({','.join(FERPLUS_COLUMNS)}), found {len(fields)}")
    return [_unquote(f) for f in fields]


def _vote(source: str, row: int, column: str, text: str) -> int:
    # ASCII digits only: int() and str.isdigit() would also take "1_0", "+5", "٣" or "²".
    if text and text.isascii() and text.isdigit():
        digits = text.lstrip("0") or "0"
        if len(digits) <= _MAX_VOTE_DIGITS:
            return int(digits)
        reason = f"{column} vote count {_show(text)} is too large"
    elif text.startswith("-") and text[1:].isascii() and text[1:].isdigit():
        reason = f"{column} vote count {_show(text)} is negative"
    else:
        reason = f"{column} vote count {_show(text)} is not a non-negative integer"
    raise BadInputError(source, _where(row), reason)


# ----------------------------------------------------------------------- alignment
def align_ferplus(
    votes: FerPlusVotes, dataset: FaceDataset, *, subset: bool = False
) -> FerPlusVotes:
    """The FER+ votes of each image of ``dataset``, in the dataset's order.

    An image's votes are those of FER+ row ``dataset.rows[i]``; ``rows`` are the images'
    data rows in the Kaggle CSV they were read from, and subsets keep them. Before
    indexing, the two are checked against each other:

    * the row count: by default the dataset must hold its whole input, i.e. the images
      it holds plus the rows its reader dropped (``dataset.dropped``) are as many as
      FER+'s rows. With ``subset=True`` (a split, a cleaned dataset) every image's row
      need only exist in FER+;
    * the Usage of every image equals FER+'s Usage of its row;
    * no image is synthetic (a resampler's): FER+ has no votes for it.

    Parameters
    ----------
    votes : FerPlusVotes
        As :func:`read_ferplus` returns it (one entry per FER+ row).
    dataset : FaceDataset
        Read from the original Kaggle ``fer2013.csv``, or a subset of one.
    subset : bool, default=False
        Accept a dataset holding only some of its input's rows.

    Returns
    -------
    FerPlusVotes
        One entry per image of ``dataset``; ``rows`` are the FER+ rows (== ``dataset.rows``).

    Raises
    ------
    BadInputError
        Naming both files, the first mismatching row and what differs, and saying that
        FER+ aligns only with the original Kaggle CSV's row order.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.dataset import FaceDataset
    >>> v = FerPlusVotes(votes=[[0, 0, 0, 5, 0, 0, 0], [5, 0, 0, 0, 0, 0, 0]],
    ...                  contempt=[0, 0], unknown=[0, 0], not_face=[0, 0],
    ...                  usage=[0, 1], image_names=["a", "b"], rows=[0, 1])
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[3, 1],
    ...                  splits=["Training", "PublicTest"], source="fer2013.csv")
    >>> align_ferplus(v, ds).majority.tolist()
    [3, 0]
    >>> align_ferplus(v, ds.split("PublicTest"), subset=True).rows.tolist()
    [1]
    """
    if not isinstance(votes, FerPlusVotes):
        raise TypeError(f"votes must be FerPlusVotes (see read_ferplus); got "
                        f"{type(votes).__name__}")
    check_dataset(dataset)
    ferplus = votes.source or "the FER+ votes"
    data = dataset.source or "the dataset"
    both = f"does not match the dataset {data}"
    n_ferplus = len(votes)
    if not np.array_equal(votes.rows, np.arange(n_ferplus)):
        raise ValueError("votes must hold every FER+ row in file order, as read_ferplus "
                         "returns them; align the whole file, then take a subset")
    if np.any(dataset.synthetic):
        i = int(np.flatnonzero(dataset.synthetic)[0])
        raise BadInputError(ferplus, None, f"{both}: image {i} ({dataset.ids[i]}) is "
                            "synthetic (made by a resampler); FER+ has votes only for images "
                            "read from fer2013.csv")
    n_input = len(dataset) + len(dataset.dropped)
    if not subset and n_input != n_ferplus:
        dropped = f" ({len(dataset)} images + {len(dataset.dropped)} dropped rows)" \
            if len(dataset.dropped) else ""
        raise BadInputError(ferplus, None, f"{both}: row counts differ: FER+ has "
                            f"{n_ferplus:,} rows, the dataset's input {n_input:,}{dropped}; "
                            f"{_ALIGN_HINT}. For a split or a cleaned subset of the Kaggle "
                            "CSV pass subset=True")
    rows = dataset.rows
    beyond = (rows < 0) | (rows >= n_ferplus)
    if np.any(beyond):
        i = int(np.flatnonzero(beyond)[0])
        raise BadInputError(ferplus, None, f"{both}: image {i} ({dataset.ids[i]}) comes from "
                            f"input row {int(rows[i])}, but FER+ has rows 0..{n_ferplus - 1} "
                            f"only; {_ALIGN_HINT}")
    differ = votes.usage[rows] != dataset.splits
    if np.any(differ):
        i = int(np.flatnonzero(differ)[0])
        r = int(rows[i])
        raise BadInputError(ferplus, _where(r), f"{both}: Usage is {SPLITS[votes.usage[r]]} "
                            f"in FER+ but {SPLITS[dataset.splits[i]]} for the dataset's image "
                            f"{i} ({dataset.ids[i]}, input row {r}); "
                            f"{int(differ.sum()):,} of {len(dataset):,} images differ. "
                            f"{_ALIGN_HINT}")
    return votes.subset(rows)


# ----------------------------------------------------------------------- agreement
@dataclass(frozen=True, eq=False)
class FerPlusAgreement:
    """How a set of labels agrees with FER+'s majority (see :func:`ferplus_agreement`).

    Attributes
    ----------
    per_class : DataFrame
        Indexed by the given label (ferclean's names) and a last row ``all``; columns
        ``images`` (labelled with it), ``no_majority`` (among them, FER+ names no class),
        ``not_face`` (among them, FER+ says not a face), ``compared`` (images with a FER+
        majority), ``agree``, ``disagree`` and ``disagree_rate`` (``disagree /
        compared``, NaN when nothing was compared).
    confusion : DataFrame
        Counts, given label (index) x FER+ majority (columns: the seven classes, then
        ``none`` for images without a majority). Unlabelled images are left out.
    """

    per_class: pd.DataFrame
    confusion: pd.DataFrame

    @property
    def compared(self) -> int:
        """Labelled images that have a FER+ majority."""
        return int(self.per_class.loc["all", "compared"])

    @property
    def disagree(self) -> int:
        """Compared images whose label is not FER+'s majority."""
        return int(self.per_class.loc["all", "disagree"])


def ferplus_agreement(labels: Any, votes: FerPlusVotes) -> FerPlusAgreement:
    """Count how many labels disagree with the FER+ majority, per class and overall.

    Pure counting: images whose label is ``-1`` (unlabelled) are left out, and images
    without a FER+ majority (:attr:`FerPlusVotes.majority` is ``-1``) are counted apart
    (``no_majority``; the ``none`` column of the confusion table) rather than compared.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Labels ``-1..6`` aligned with ``votes`` (e.g. ``dataset.labels`` and
        ``align_ferplus(votes, dataset)``).
    votes : FerPlusVotes
        Aligned FER+ votes, one entry per label.

    Returns
    -------
    FerPlusAgreement

    Examples
    --------
    >>> v = FerPlusVotes(votes=[[0, 0, 0, 9, 0, 0, 1], [0, 0, 0, 6, 0, 0, 4],
    ...                         [0, 0, 0, 0, 0, 0, 0]],
    ...                  contempt=[0, 0, 0], unknown=[0, 0, 0], not_face=[0, 0, 10],
    ...                  usage=[0, 0, 0], image_names=["a", "b", ""], rows=[0, 1, 2])
    >>> a = ferplus_agreement([3, 6, 6], v)
    >>> a.compared, a.disagree
    (2, 1)
    >>> a.per_class.loc["neutral", ["images", "no_majority", "not_face", "disagree"]].tolist()
    [2, 1, 1, 1]
    """
    if not isinstance(votes, FerPlusVotes):
        raise TypeError(f"votes must be FerPlusVotes (see read_ferplus); got "
                        f"{type(votes).__name__}")
    labels = np.asarray(labels)
    if labels.shape != (len(votes),):
        raise ValueError(f"labels must have shape ({len(votes)},), one per FER+ entry; got "
                         f"{labels.shape}")
    if labels.size and (labels.dtype.kind not in "iu"
                        or labels.min() < UNLABELED or labels.max() >= len(EMOTIONS)):
        raise ValueError(f"labels must be integers in {UNLABELED}..{len(EMOTIONS) - 1}")
    k = len(EMOTIONS)
    labelled = labels >= 0
    given = labels[labelled].astype(np.int64)
    majority = votes.majority[labelled].astype(np.int64)
    column = np.where(majority >= 0, majority, k)  # k: the "none" column
    table = np.bincount(given * (k + 1) + column, minlength=k * (k + 1)).reshape(k, k + 1)
    confusion = pd.DataFrame(table, index=pd.Index(EMOTIONS, name="label"),
                             columns=pd.Index([*EMOTIONS, "none"], name="ferplus_majority"))
    not_face = np.bincount(given[votes.is_not_face[labelled]], minlength=k)
    per_class = pd.DataFrame({
        "images": table.sum(axis=1),
        "no_majority": table[:, k],
        "not_face": not_face,
        "compared": table[:, :k].sum(axis=1),
        "agree": np.diag(table),
    }, index=pd.Index(EMOTIONS, name="label"))
    per_class.loc["all"] = per_class.sum(axis=0)
    per_class["disagree"] = per_class["compared"] - per_class["agree"]
    compared = per_class["compared"].to_numpy(dtype=float)
    per_class["disagree_rate"] = np.divide(
        per_class["disagree"].to_numpy(dtype=float), compared,
        out=np.full(len(compared), np.nan), where=compared > 0)
    return FerPlusAgreement(per_class=per_class.astype(
        {c: np.int64 for c in per_class.columns if c != "disagree_rate"}), confusion=confusion)


__all__ = [
    "FERPLUS_CLASS_COLUMNS",
    "FERPLUS_COLUMNS",
    "FERPLUS_VOTE_COLUMNS",
    "FerPlusAgreement",
    "FerPlusVotes",
    "align_ferplus",
    "ferplus_agreement",
    "read_ferplus",
]
