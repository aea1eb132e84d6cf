"""The Kaggle CSV reader and writer: variants, fast/careful agreement, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ferclean.io.csv as csvmod
from ferclean.errors import BadInputError, BadInputWarning
from ferclean.io.csv import csv_text, read_csv, write_csv
from helpers import file_digest, make_random_dataset


def pixel_text(img: np.ndarray) -> str:
    return " ".join(map(str, img.ravel()))


def test_round_trip_is_exact(tmp_path, random_dataset):
    path = write_csv(random_dataset, tmp_path / "d.csv")
    back = read_csv(path)
    assert back.equals(random_dataset)
    assert back.rows.tolist() == list(range(len(random_dataset)))
    assert back.ids.tolist() == [str(i) for i in range(len(random_dataset))]
    assert back.source == str(path)


def test_many_chunks_and_threads_agree_with_one(tmp_path, monkeypatch):
    ds = make_random_dataset(n=200, seed=3)
    path = write_csv(ds, tmp_path / "d.csv")
    monkeypatch.setattr(csvmod, "_CHUNK_BYTES", 20_000)  # ~ 2 rows per chunk
    assert read_csv(path, workers=2).equals(ds)
    assert read_csv(path, workers=1).equals(ds)


def test_writer_output_matches_plain_formatting(random_dataset):
    text = csv_text(random_dataset[:2])
    lines = text.splitlines()
    assert lines[0] == "emotion,pixels,Usage"
    img = random_dataset.pixels[1]
    assert lines[2] == f"{random_dataset.labels[1]},{pixel_text(img)},Training"


@pytest.mark.parametrize(
    "header, build",
    [
        ("emotion,pixels", lambda lab, px, use: f"{lab},{px}"),
        ("emotion, Usage, pixels", lambda lab, px, use: f"{lab},{use},{px}"),
        ("emotion,pixels,Usage", lambda lab, px, use: f'{lab},"{px}",{use}'),
        ("pixels,Usage", lambda lab, px, use: f"{px},{use}"),
        ("pixels", lambda lab, px, use: f"{px}"),
        ("Usage,emotion,pixels", lambda lab, px, use: f"{use},{lab},{px}"),
    ],
)
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_variants(tmp_path, random_dataset, header, build, newline):
    ds = random_dataset
    body = [
        build(lab, pixel_text(img), use)
        for lab, img, use in zip(ds.labels, ds.pixels, ds.split_names, strict=True)
    ]
    path = tmp_path / "v.csv"
    path.write_bytes((newline.join([header, *body]) + newline).encode())
    got = read_csv(path)
    np.testing.assert_array_equal(got.pixels, ds.pixels)
    if "emotion" in header:
        np.testing.assert_array_equal(got.labels, ds.labels)
    else:
        assert (got.labels == -1).all() and not got.has_labels
    if "Usage" in header:
        np.testing.assert_array_equal(got.splits, ds.splits)
    else:
        assert set(got.split_names) == {"Training"}


def test_no_trailing_newline_and_extra_columns_use_careful_reader(tmp_path, random_dataset):
    ds = random_dataset
    rows = [f"{lab},{pixel_text(img)},{use},x{i}" for i, (lab, img, use) in
            enumerate(zip(ds.labels, ds.pixels, ds.split_names, strict=True))]
    path = tmp_path / "extra.csv"
    path.write_text("emotion,pixels,Usage,note\n" + "\n".join(rows))
    assert read_csv(path).equals(ds)


def _write_with_bad_row(tmp_path, ds, bad_line: str, at: int = 2):
    lines = csv_text(ds).splitlines()
    lines[at + 1] = bad_line  # +1 for the header
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = " ".join(["1"] * 2304)
BAD_ROWS = {
    "too few pixels": ("0," + " ".join(["1"] * 2303) + ",Training",
                       "expected 2304 pixel values, found 2303"),
    "too many pixels": ("0," + GOOD + " 5,Training", "expected 2304 pixel values, found 2305"),
    "non-integer": ("0," + GOOD.replace("1", "1.5", 1) + ",Training", "not an integer"),
    "negative": ("0," + GOOD.replace("1", "-4", 1) + ",Training", "not an integer"),
    "out of range": ("0," + GOOD.replace("1", "256", 1) + ",Training", "'256'"),
    "unknown label": ("7," + GOOD + ",Training", "unknown label '7'"),
    "text label": ("happy," + GOOD + ",Training", "unknown label 'happy'"),
    "unknown usage": ("0," + GOOD + ",Validation", "unknown Usage 'Validation'"),
    "missing field": ("0," + GOOD, "expected 3 fields"),
    # str.isdigit() is true for these and int() used to fail on them with no file or row.
    "superscript pixel": ("0," + GOOD.replace("1", "²", 1) + ",Training", "pixel 0 is '²'"),
    "superscript label": ("³," + GOOD + ",Training", "unknown label '³'"),
    "arabic-indic label": ("٣," + GOOD + ",Training", "unknown label '٣'"),
    "underscore pixel": ("0," + GOOD.replace("1", "1_0", 1) + ",Training", "pixel 0 is '1_0'"),
    "signed pixel": ("0," + GOOD.replace("1", "+5", 1) + ",Training", "pixel 0 is '+5'"),
    "stray quote": ('0,"' + GOOD + ",Training", "pixel 0 is '\"1'"),
    "stray quote in label": ('0",' + GOOD + ",Training", "unknown label '0\"'"),
    "blank line": ("", "blank line"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_raises_naming_file_and_row(tmp_path, random_dataset, case):
    line, reason = BAD_ROWS[case]
    path = _write_with_bad_row(tmp_path, random_dataset, line, at=2)
    before = file_digest(path)
    with pytest.raises(BadInputError) as err:
        read_csv(path)
    message = str(err.value)
    assert str(path) in message and "row 2 (line 4)" in message and reason in message
    assert file_digest(path) == before  # the input is never modified


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_bad_row_skip_and_report(tmp_path, random_dataset, case):
    line, reason = BAD_ROWS[case]
    path = _write_with_bad_row(tmp_path, random_dataset, line, at=2)
    keep = np.arange(len(random_dataset)) != 2
    skipped = read_csv(path, on_bad="skip")
    assert skipped.equals(random_dataset[keep])
    assert skipped.rows.tolist() == np.flatnonzero(keep).tolist()  # rows keep the gap
    assert skipped.dropped.location.tolist() == ["row 2 (line 4)"]
    assert reason in skipped.dropped.reason[0]
    with pytest.warns(BadInputWarning, match="dropped 1 bad record"):
        reported = read_csv(path, on_bad="report")
    assert reported.equals(skipped)


def test_skip_does_not_warn(tmp_path, random_dataset):
    path = _write_with_bad_row(tmp_path, random_dataset, "9," + GOOD + ",Training")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_csv(path, on_bad="skip")) == len(random_dataset) - 1


def test_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty.csv: file is empty"):
        read_csv(path)


@pytest.mark.parametrize("text", ["emotion,pixels,Usage\n", "emotion,pixels,Usage",
                                  "pixels\r\n\r\n  \n\t"])
def test_header_only_is_an_empty_dataset(tmp_path, text):
    path = tmp_path / "header.csv"
    path.write_text(text)
    ds = read_csv(path)
    assert len(ds) == 0 and ds.pixels.shape == (0, 48, 48) and len(ds.dropped) == 0


@pytest.mark.parametrize("usage", [True, False])
def test_empty_dataset_round_trips(tmp_path, random_dataset, usage):
    """A plan that removes every image writes a CSV that must read back."""
    empty = random_dataset[np.zeros(len(random_dataset), bool)]
    path = write_csv(empty, tmp_path / "empty.csv", usage=usage)
    back = read_csv(path)
    assert back.equals(empty) and len(back) == 0 and back.source == str(path)


def test_a_plan_that_removes_every_image_gives_a_restorable_csv_output(tmp_path):
    from ferclean.cleaning import audit_and_clean, restore_from
    from ferclean.dataset import FaceDataset
    from ferclean.io import load, save

    img = np.random.default_rng(0).integers(0, 256, (1, 48, 48), dtype=np.uint8)
    ds = FaceDataset(np.repeat(img, 2, axis=0), labels=[0, 1])  # one conflict: both go
    result = audit_and_clean(load(save(ds, tmp_path / "in.csv")), "no-conflicts")
    assert len(result.cleaned) == 0
    out = result.save(tmp_path / "clean")
    assert (out / "cleaned.csv").read_text() == "emotion,pixels,Usage\n"
    assert restore_from(out).equals(ds)


def test_missing_pixels_column(tmp_path):
    path = tmp_path / "nopix.csv"
    path.write_text("emotion,Usage\n0,Training\n")
    with pytest.raises(BadInputError, match=r"nopix.csv: line 1: missing column 'pixels'"):
        read_csv(path)


def test_missing_header(tmp_path, random_dataset):
    path = tmp_path / "nohead.csv"
    path.write_text("\n".join(csv_text(random_dataset).splitlines()[1:]))
    with pytest.raises(BadInputError, match="no header row"):
        read_csv(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_csv(tmp_path / "nope.csv")


def test_bad_on_bad_value(tmp_path, random_dataset):
    path = write_csv(random_dataset, tmp_path / "d.csv")
    with pytest.raises(ValueError, match="on_bad must be one of"):
        read_csv(path, on_bad="ignore")


def test_writer_refuses_to_overwrite(tmp_path, random_dataset):
    path = write_csv(random_dataset, tmp_path / "d.csv")
    with pytest.raises(FileExistsError):
        write_csv(random_dataset, path)
    write_csv(random_dataset[:3], path, overwrite=True)
    assert len(read_csv(path)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]  # no temp files left


# ------------------------------------------------------------ hostile and odd input
def _rows_text(ds) -> list[str]:
    return csv_text(ds).splitlines()


@pytest.mark.parametrize("on_bad", ["raise", "skip"])
def test_a_line_over_the_old_field_limit_is_one_bad_row_in_bounded_memory(
    tmp_path, random_dataset, on_bad
):
    """A 12 MB line (Python's csv module stopped at 128 KB with a traceback) is row 1."""
    import tracemalloc

    lines = _rows_text(random_dataset)
    lines[2] = "0," + "1" * 12_000_000 + ",Training"
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    tracemalloc.start()
    try:
        if on_bad == "raise":
            with pytest.raises(BadInputError) as err:
                read_csv(path)
            message = str(err.value)
            assert message.startswith(f"{path}: row 1 (line 3): line is 12,000,011 bytes long")
            assert "--on-bad skip" in message and len(message) < 300
        else:
            ds = read_csv(path, on_bad="skip")
            assert ds.rows.tolist() == [0, *range(2, len(random_dataset))]
            assert ds.dropped.reason[0].startswith("line is 12,000,011 bytes long")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000  # never the whole line


def test_unbalanced_quote_and_a_short_row_are_two_bad_rows(tmp_path, random_dataset):
    """An open quote no longer swallows the rest of the file into one field."""
    lines = _rows_text(random_dataset)
    lines[2] = '0,"' + lines[2].split(",")[1] + ",Training"
    lines[5] = "3,1 2 3,Training"
    path = tmp_path / "quote.csv"
    path.write_text("\n".join(lines) + "\n")
    ds = read_csv(path, on_bad="skip")
    assert ds.dropped.location.tolist() == ["row 1 (line 3)", "row 4 (line 6)"]
    assert ds.dropped.reason.tolist()[1] == "expected 2304 pixel values, found 3"
    assert ds.equals(random_dataset[np.setdiff1d(np.arange(len(random_dataset)), [1, 4])])
    with pytest.raises(BadInputError, match=r"row 1 \(line 3\): pixel 0 is '\"\d+'"):
        read_csv(path)


def test_cli_gives_one_line_for_a_huge_field(tmp_path, random_dataset, capsys):
    from ferclean.cli import main

    lines = _rows_text(random_dataset)
    lines[2] = "0," + "1" * 200_000 + ",Training"
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    assert main(["convert", str(path), str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert f"{path}: row 1 (line 3)" in err[0] and "--on-bad skip" in err[0]
    assert main(["convert", str(path), str(tmp_path / "out.npz"), "--on-bad", "skip"]) == 0
    assert f"wrote {len(random_dataset) - 1} images" in capsys.readouterr().out


def test_huge_header_is_cut_in_the_message(tmp_path, random_dataset):
    rows = _rows_text(random_dataset)[1:]
    path = tmp_path / "head.csv"
    path.write_text("emotion,pixels,Usage" + "x" * 10_000_000 + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(BadInputError, match="header is longer than 65,536 bytes") as err:
        read_csv(path)
    assert len(str(err.value)) < 400
    path.write_text("emotion," + "y" * 60_000 + ",Usage\n" + "\n".join(rows) + "\n")
    with pytest.raises(BadInputError, match="missing column 'pixels'") as err:
        read_csv(path)
    assert len(str(err.value)) < 400 and "60,014 characters" in str(err.value)


def test_long_runs_of_leading_zeros_do_not_crash(tmp_path):
    """int() refuses strings of over 4,300 digits; the reader never hands it one."""
    pixels = ["1"] * 2304
    pixels[0] = "0" * 5000 + "7"
    good = ",".join(["0" * 5000 + "3", " ".join(pixels), "Training"])
    pixels[5] = "x"
    bad = ",".join(["3", " ".join(pixels), "Training"])
    path = tmp_path / "zeros.csv"
    path.write_text("\n".join(["emotion,pixels,Usage", good, bad]) + "\n")
    ds = read_csv(path, on_bad="skip")
    assert ds.labels.tolist() == [3] and int(ds.pixels[0, 0, 0]) == 7
    assert ds.dropped.reason.tolist() == ["pixel 5 is 'x', not an integer in 0..255"]


def test_many_short_lines_do_not_allocate_images_for_them(tmp_path):
    """100,000 newlines used to reserve 100,000 images (230 MB) before any check."""
    import tracemalloc

    path = tmp_path / "newlines.csv"
    path.write_bytes(b"emotion,pixels,Usage\n" + b"0,1,Training\n" * 100_000)
    tracemalloc.start()
    try:
        with pytest.raises(BadInputError, match=r"row 0 \(line 2\): expected 2304 pixel"):
            read_csv(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000


def test_blank_tail_is_ignored_by_both_readers(tmp_path, random_dataset):
    """Whether the careful reader runs (a bad row elsewhere) does not change the tail."""
    lines = _rows_text(random_dataset)
    tail = "\n \n\t\r\n  \r\r"
    path = tmp_path / "tail.csv"
    path.write_text("\n".join(lines) + tail)
    assert read_csv(path).equals(random_dataset)
    lines[2] = "9," + GOOD + ",Training"
    path.write_text("\n".join(lines) + tail)
    ds = read_csv(path, on_bad="skip")
    assert len(ds) == len(random_dataset) - 1 and len(ds.dropped) == 1


def test_a_bad_row_sends_only_its_chunk_to_the_careful_reader(tmp_path, monkeypatch):
    ds = make_random_dataset(n=60, seed=4)
    lines = _rows_text(ds)
    lines[1 + 40] = "0," + GOOD + ",Validation"
    lines[1 + 7] = "0," + GOOD + ",Nope"
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(csvmod, "_CHUNK_BYTES", 50_000)  # ~ 5 rows per chunk
    careful_rows = []
    real = csvmod._careful_rows

    def spy(buf, a, b, first_row, *args):
        for row, parsed in real(buf, a, b, first_row, *args):
            careful_rows.append(row)
            yield row, parsed

    monkeypatch.setattr(csvmod, "_careful_rows", spy)
    got = read_csv(path, on_bad="skip", workers=2)
    assert got.equals(ds[np.setdiff1d(np.arange(60), [7, 40])])
    assert got.rows.tolist() == np.setdiff1d(np.arange(60), [7, 40]).tolist()
    assert 7 in careful_rows and 40 in careful_rows and len(careful_rows) < 20
    with pytest.raises(BadInputError, match=r"row 7 \(line 9\): unknown Usage 'Nope'"):
        read_csv(path, workers=2)  # the first bad row of the file, whichever thread ends first


@pytest.mark.parametrize(
    "header, match",
    [
        ("émotion,pixels,Usage", r"line 1: column 'émotion' looks like a misspelt or "
         r"mis-encoded 'emotion' \(header: 'émotion,pixels,Usage'\)"),
        ("emotions,pixels,Usage", "looks like a misspelt or mis-encoded 'emotion'"),
        ("emotion,pixels,Usages", "looks like a misspelt or mis-encoded 'Usage'"),
        ("emotion,pixels,pixels", r"column 'pixels' appears 2 times \(header: "),
        ("Emotion,emotion,pixels", "column 'emotion' appears 2 times"),
    ],
)
def test_header_that_would_silently_drop_a_column_is_refused(tmp_path, header, match):
    path = tmp_path / "h.csv"
    path.write_text(header + "\n0," + GOOD + ",Training\n")
    with pytest.raises(BadInputError, match=match):
        read_csv(path)


def test_mis_encoded_header_bytes_are_refused_with_the_header_shown(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("émotion,pixels,Usage\n".encode("latin-1") + f"0,{GOOD},Training\n".encode())
    with pytest.raises(BadInputError, match=r"'\ufffdmotion,pixels,Usage'"):
        read_csv(path)


def test_unknown_column_beside_a_missing_one_warns(tmp_path):
    path = tmp_path / "id.csv"
    path.write_text(f"pixels,id\n{GOOD},17\n")
    with pytest.warns(BadInputWarning, match=r"ignoring unknown column\(s\) 'id'; no 'emotion' "
                      r"column, so every image is read unlabeled; no 'Usage' column"):
        ds = read_csv(path)
    assert len(ds) == 1 and not ds.has_labels


def test_a_fifo_or_folder_named_csv_is_refused_without_reading(tmp_path):
    """A FIFO would block the read forever; a folder is not 'no such file'."""
    import os

    folder = tmp_path / "images.csv"
    folder.mkdir()
    with pytest.raises(BadInputError, match=r"images.csv: not a regular file.*--input-format"):
        read_csv(folder)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.csv"
        os.mkfifo(fifo)
        with pytest.raises(BadInputError, match="pipe.csv: not a regular file"):
            read_csv(fifo)
