"""One answer per row: the fast and careful CSV readers against a reference, on mutated rows.

The reference below is written from the grammar in docs/formats.md ("Kaggle CSV input"),
one row at a time, so it cannot depend on other rows. Each generated file is read four
ways and every row must get the reference's answer (its values, or the category of the
reason it is refused):

* the careful reader alone, over the whole file;
* ``read_csv(on_bad="skip")``, which mixes fast chunks and careful ones;
* the fast path with one row per chunk: a row it accepts must be one the reference
  accepts, with the same values (it may hand any row to the careful reader);
* each row alone in its own file (the answer does not depend on the other rows).
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ferclean.io.csv as csvmod
from ferclean.dataset import SPLITS
from ferclean.errors import BadInputError, BadRecords
from ferclean.io.csv import read_csv

N = 2304
LAYOUTS = [
    "emotion,pixels,Usage",
    "emotion, Usage, pixels",
    "Usage,emotion,pixels",
    "pixels,Usage",
    "emotion,pixels",
    "pixels,emotion",
    "pixels",
]
# Interesting replacements, valid and not: signs, underscores, non-ASCII digits, superscripts,
# stray and paired quotes, blanks, leading zeros.
LABELS = ["0", "6", "7", "06", "006", "00", "+5", "-0", "1_0", "٣", "³", "²", '"3', '3"',
          '"3"', " 3", "3 ", "\t3", "", "3.0", "1e0", "0x1", "３", '""3""', "3\r", "3\x0b",
          "0" * 4400 + "3", "0" * 4400 + "9"]  # Python's int() refuses over 4,300 digits
USAGES = ["Training", "PublicTest", "PrivateTest", "training", "PRIVATETEST", "Training.",
          "#Training", "_PrivateTest_", '"Training"', '"Training', 'Training"', " PublicTest",
          "PublicTest ", "Training x", "Train", "PublicTestX", "", "Tra\u0131ning", "Trainin",
          "PrivateTes", "T", "\xa0Training"]
PIXELS = ["0", "255", "256", "007", "0007", "0255", "1000", "2255", "10000", "+5", "-0",
          "1_0", "٣", "²", "1.0", "", '"5', '5"', "9" * 30, "0" * 40 + "7", "0" * 4400 + "7",
          "x", "5\x0c", "\xa0"]
INSERTS = ['"', ",", " ", "\t", "\r", ".", "#", "_", "+", "-", "0", "9", "x", "é", "²",
           "\x0b", "\xa0", '""']
SEPARATORS = ["  ", "\t", " \t ", "", ",", "\r", "\x0c", "_"]


# ---------------------------------------------------------------------- reference
def reference_row(line: bytes, columns: list[str]) -> tuple:
    """The documented grammar, transcribed: ("ok", label, split, pixels) or ("bad", why)."""
    if line.endswith(b"\r"):
        line = line[:-1]
    if len(line) > csvmod._MAX_LINE_BYTES:
        return ("bad", "too long")
    if re.fullmatch(rb"[ \t]*", line):
        return ("bad", "blank")
    fields = line.split(b",")
    if len(fields) != len(columns):
        return ("bad", "fields")
    values = {}
    for name, field in zip(columns, fields, strict=True):
        field = field.strip(b" \t")
        quoted = re.fullmatch(rb'"(.*)"', field, re.DOTALL)
        values[name] = quoted.group(1).strip(b" \t") if quoted else field
    label = -1
    if "emotion" in values:
        if not re.fullmatch(rb"0*[0-6]", values["emotion"]):
            return ("bad", "label")
        label = int(values["emotion"][-1:])
    split = 0
    if "Usage" in values:
        names = [s.lower().encode() for s in SPLITS]
        if values["Usage"].lower() not in names:
            return ("bad", "usage")
        split = names.index(values["Usage"].lower())
    tokens = [t for t in re.split(rb"[ \t]+", values["pixels"]) if t]
    if len(tokens) != N:
        return ("bad", "pixel count")
    for k, token in enumerate(tokens):
        # bytes.isdigit: ASCII digits only; int() refuses over 4,300 digits.
        if not (token.isdigit() and len(token.lstrip(b"0")) <= 3 and int(token[-3:]) <= 255):
            return ("bad", f"pixel {k}")
    return ("ok", label, split, tuple(int(t[-3:]) for t in tokens))


def category(reason: str) -> str:
    """The reader's reason text -> the reference's category."""
    for prefix, name in [("line is ", "too long"), ("blank line", "blank"),
                         ("unknown label", "label"), ("unknown Usage", "usage"),
                         (f"expected {N} pixel values", "pixel count")]:
        if reason.startswith(prefix):
            return name
    if re.match(r"expected \d+ fields", reason):
        return "fields"
    found = re.match(r"(pixel \d+) is ", reason)
    assert found, reason
    return found.group(1)


def outcomes(ds, n_rows: int, columns: list[str]) -> list[tuple]:
    """Per row: the accepted values, or the category of why it was dropped."""
    got: list[tuple | None] = [None] * n_rows
    for i, row in enumerate(ds.rows.tolist()):
        label = int(ds.labels[i]) if "emotion" in columns else -1
        split = int(ds.splits[i])
        got[row] = ("ok", label, split, tuple(ds.pixels[i].ravel().tolist()))
    for location, reason in zip(ds.dropped.location, ds.dropped.reason, strict=True):
        row = int(re.match(r"row (\d+) \(line (\d+)\)", location).group(1))
        assert got[row] is None
        got[row] = ("bad", category(reason))
    assert all(g is not None for g in got)
    return got


# ---------------------------------------------------------------------- generator
EDGE_PIXELS = ("first", "second", "middle", "last")


class Row:
    """A clean row as parts (fields, pixel tokens, separators) that mutations edit."""

    def __init__(self, columns: list[str], rng: np.random.Generator) -> None:
        self.columns = columns
        self.rng = rng
        self.pixels = [str(v) for v in rng.integers(0, 256, N)]
        self.seps = [" "] * (N - 1)  # seps[k] sits between pixels k and k + 1
        self.fields = {"emotion": str(rng.integers(0, 7)), "Usage": SPLITS[rng.integers(0, 3)]}
        self.edits: list[tuple[str, int, str]] = []  # byte-level: (what, edge, char)

    def at(self, where: str, size: int) -> int:
        return {"first": 0, "second": 1, "middle": int(self.rng.integers(1, size - 1)),
                "last": size - 1}[where]

    def quote(self, name: str, before: str, after: str) -> None:
        if name == "pixels":
            self.pixels[0], self.pixels[-1] = before + self.pixels[0], self.pixels[-1] + after
        else:
            self.fields[name] = before + self.fields[name] + after

    def text(self) -> str:
        pixel_text = "".join(p + s for p, s in zip(self.pixels, [*self.seps, ""], strict=True))
        line = ",".join(pixel_text if c == "pixels" else self.fields[c] for c in self.columns)
        for what, edge, char in self.edits:
            # Edges: the line's start and end, and both sides of every comma.
            commas = [m.start() + d for m in re.finditer(",", line) for d in (0, 1)]
            spots = [0, len(line), *commas]
            at = min(spots[edge % len(spots)], len(line))
            if what == "insert":
                line = line[:at] + char + line[at:]
            elif at < len(line):
                line = line[:at] + (char if what == "replace" else "") + line[at + 1 :]
        return line


WRAPS = [('"', '"'), ('"', ""), ("", '"'), (' "', '" '), ('" ', ' "'), ('""', '""')]


@st.composite
def mutated_row(draw, columns: list[str], rng: np.random.Generator) -> str:
    row = Row(columns, rng)
    # Mostly one flaw per row: a second flaw can hide the first behind an earlier check.
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 1, 2, 3]))):
        kind = draw(st.sampled_from(["label", "usage", "pixel", "separator", "count", "quote",
                                     "insert", "delete", "replace"]))
        if kind == "label":
            row.fields["emotion"] = draw(st.sampled_from(LABELS))
        elif kind == "usage":
            row.fields["Usage"] = draw(st.sampled_from(USAGES))
        elif kind == "pixel":
            k = row.at(draw(st.sampled_from(EDGE_PIXELS)), len(row.pixels))
            row.pixels[k] = draw(st.sampled_from(PIXELS))
        elif kind == "separator":
            k = row.at(draw(st.sampled_from(EDGE_PIXELS)), len(row.seps))
            row.seps[k] = draw(st.sampled_from(SEPARATORS))
        elif kind == "count":
            if draw(st.booleans()):
                row.pixels.pop()
                row.seps.pop()
            else:
                row.pixels.append("1")
                row.seps.append(" ")
        elif kind == "quote":
            row.quote(draw(st.sampled_from(columns)), *draw(st.sampled_from(WRAPS)))
        else:
            row.edits.append((kind, draw(st.integers(0, 7)), draw(st.sampled_from(INSERTS))))
    return row.text()


def single_flaws(columns: list[str], seed: int) -> list[str]:
    """Every single flaw of the generator, once each, on otherwise clean rows."""
    rng = np.random.default_rng(seed)
    rows: list[str] = []

    def make(edit) -> None:
        row = Row(columns, rng)
        edit(row)
        rows.append(row.text())

    make(lambda row: None)
    for value in LABELS if "emotion" in columns else []:
        make(lambda row, v=value: row.fields.__setitem__("emotion", v))
    for value in USAGES if "Usage" in columns else []:
        make(lambda row, v=value: row.fields.__setitem__("Usage", v))
    for value in PIXELS:
        for where in ("first", "middle", "last"):
            make(lambda row, v=value, w=where: row.pixels.__setitem__(row.at(w, N), v))
    for value in SEPARATORS:
        for where in ("first", "last"):
            make(lambda row, v=value, w=where: row.seps.__setitem__(row.at(w, N - 1), v))
    for name in columns:
        for wrap in WRAPS:
            make(lambda row, n=name, w=wrap: row.quote(n, *w))
    for edge in range(2 + 2 * (len(columns) - 1)):
        make(lambda row, e=edge: row.edits.append(("delete", e, "")))
        for char in INSERTS:
            make(lambda row, e=edge, c=char: row.edits.append(("insert", e, c)))
        for char in ('"', ";", " ", "\t", "\r", "x"):
            make(lambda row, e=edge, c=char: row.edits.append(("replace", e, c)))
    return rows


@st.composite
def csv_file(draw) -> tuple[str, list[str], list[str], str]:
    header = draw(st.sampled_from(LAYOUTS))
    columns = [c.strip() for c in header.split(",")]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows = [draw(mutated_row(columns, rng)) for _ in range(draw(st.integers(1, 5)))]
    return header, columns, rows, draw(st.sampled_from(["\n", "\r\n"]))


def _body(data: bytes):
    columns, start = csvmod._parse_header(data, "fuzz.csv")
    return columns, start, csvmod._content_end(data, start)


def check_every_reader(tmp_path, header: str, rows: list[str], newlines: list[str],
                       *, thorough: bool) -> list[tuple]:
    """Read the file every way; assert each row gets the reference's answer; return them."""
    columns = [c.strip() for c in header.split(",")]
    # A clean row closes the file so that no mutated row is trailing blank space (which the
    # grammar ignores at the end of a file).
    closing = ",".join({"emotion": "1", "Usage": "Training"}.get(c, " ".join(["5"] * N))
                       for c in columns)
    lines = [*rows, closing]
    ends = [*newlines, newlines[-1]]
    data = (header + ends[0] + "".join(line + end for line, end in zip(lines, ends, strict=True)))
    data = data.encode()
    # The reference sees the physical line: the \r of a \r\n end included.
    expected = [reference_row((line + end[:-1]).encode(), columns)
                for line, end in zip(lines, ends, strict=True)]
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)

    # The careful reader alone, over the whole file.
    cols, start, end = _body(data)
    assert cols == columns
    bad = BadRecords(str(path), "skip")
    careful: list[tuple | None] = [None] * len(lines)
    parser = csvmod._RowParser(cols, "skip")
    for row, parsed in csvmod._careful_rows(data, start, end, 0, parser, bad, False):
        if parsed is not None:
            careful[row] = ("ok", parsed[0], parsed[1], tuple(parsed[2].tolist()))
    for location, reason in bad.records:
        careful[int(location.split()[1])] = ("bad", category(reason))
    mismatched = [(i, lines[i][:60], careful[i], expected[i][:2])
                  for i in range(len(lines)) if careful[i] != expected[i]]
    assert not mismatched

    # The public reader (fast chunks, careful ones where needed).
    if thorough:
        assert outcomes(read_csv(path, on_bad="skip"), len(lines), columns) == expected

    # The fast path on each row, as the second row of a chunk after a clean one: whatever
    # it accepts, the reference accepts with the same values.
    layout = csvmod._Layout(cols)
    for i, (line, end) in enumerate(zip(lines, ends, strict=True)):
        chunk = np.frombuffer((closing + "\n" + line + end).encode(), np.uint8)
        pixels, labels, splits = np.zeros((2, N), np.uint8), np.full(2, -1, np.int8), np.zeros(
            2, np.int8)
        try:
            csvmod._parse_chunk(chunk, layout, pixels, labels, splits)
        except csvmod._Anomaly:
            assert i != len(lines) - 1  # the clean closing row does take the fast path
            continue
        got = ("ok", int(labels[1]), int(splits[1]), tuple(pixels[1].tolist()))
        assert got == expected[i], (i, line[:60], expected[i][:2])

    # Each row alone: the same answer as in the company of the others.
    for i, line in enumerate(rows if thorough else []):
        single = tmp_path / f"alone{i}.csv"
        single.write_bytes((newlines[i].join([header, line, closing]) + newlines[i]).encode())
        assert outcomes(read_csv(single, on_bad="skip"), 2, columns)[0] == expected[i]

    # Under on_bad="raise" the first bad row is the one named.
    first_bad = next((i for i, e in enumerate(expected) if e[0] == "bad"), None)
    if first_bad is None:
        assert len(read_csv(path)) == len(lines)
    else:
        with pytest.raises(BadInputError, match=rf"row {first_bad} \(line {first_bad + 2}\)"):
            read_csv(path)
    return expected


# -------------------------------------------------------------------------- tests
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])  # files are rewritten
@given(case=csv_file())
def test_every_row_gets_the_reference_answer_from_every_reader(tmp_path, case):
    header, _, rows, newline = case
    check_every_reader(tmp_path, header, rows, [newline] * len(rows), thorough=True)


# Between them: Usage anchored on its left and on its right, the label first and last,
# pixels first, in the middle and last, and each of them at a line end.
@pytest.mark.parametrize("header", ["emotion,pixels,Usage", "Usage,emotion,pixels",
                                    "pixels,emotion"])
def test_every_single_flaw_gets_the_reference_answer(tmp_path, header):
    """Each mutation alone, with both line ends, whatever the random draws above hit."""
    rows = single_flaws([c.strip() for c in header.split(",")], seed=len(header))
    rows = [row for row in rows for _ in (0, 1)]
    expected = check_every_reader(tmp_path, header, rows, ["\n", "\r\n"] * (len(rows) // 2),
                                  thorough=False)
    assert expected[0][0] == "ok" and sum(e[0] == "bad" for e in expected) > len(rows) // 2


@pytest.mark.parametrize(
    "value",
    ["Training.", "#Training", "_PrivateTest_", '"Training', 'Training"', "Training x"],
)
def test_usage_the_fast_reader_used_to_accept_is_refused_whatever_the_other_rows(
    tmp_path, value
):
    good = "0," + " ".join(["1"] * N) + ",Training"
    path = tmp_path / "u.csv"
    path.write_text("\n".join(["emotion,pixels,Usage", good, "0," + " ".join(["1"] * N) + ","
                               + value, good]) + "\n")
    ds = read_csv(path, on_bad="skip")
    assert ds.rows.tolist() == [0, 2]
    assert ds.dropped.reason[0].startswith("unknown Usage")


@pytest.mark.parametrize("label", ['"0', '0"', "0\r", '"0"x'])
def test_labels_with_stray_quotes_are_refused(tmp_path, label):
    good = "0," + " ".join(["1"] * N) + ",Training"
    path = tmp_path / "l.csv"
    path.write_text("\n".join(["emotion,pixels,Usage", good, label + "," + " ".join(["1"] * N)
                               + ",Training", good]) + "\n")
    ds = read_csv(path, on_bad="skip")
    assert ds.rows.tolist() == [0, 2]
    assert ds.dropped.reason[0].startswith("unknown label")


@pytest.mark.parametrize(
    "token, accepted",
    [("1_0", False), ("+5", False), ("٣", False), ("-0", False), ("1.0", False),
     ("１", False), ("007", True), ("0255", True)],
)
@pytest.mark.parametrize("where", ["label", "pixel"])
def test_non_canonical_numbers_are_refused_alike_by_both_readers(
    tmp_path, monkeypatch, token, accepted, where
):
    """ASCII digits only (leading zeros allowed), the same in the label and in pixels."""
    if where == "label" and token in ("007", "0255"):
        token = {"007": "006", "0255": "03"}[token]
    pixels = ["1"] * N
    label = "0"
    if where == "label":
        label = token
    else:
        pixels[5] = token
    path = tmp_path / "n.csv"
    path.write_text(f"emotion,pixels\n{label},{' '.join(pixels)}\n")
    for chunk in (4 << 20, 64):  # whole-file fast path, and one row per chunk
        monkeypatch.setattr(csvmod, "_CHUNK_BYTES", chunk)
        ds = read_csv(path, on_bad="skip")
        assert len(ds) == int(accepted)
        if accepted:
            assert int(ds.labels[0]) == int(label)
            assert int(ds.pixels[0].ravel()[5]) == int(pixels[5])
