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


def test_header_only_has_no_rows(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("emotion,pixels,Usage\n")
    with pytest.raises(BadInputError, match="no data rows"):
        read_csv(path)


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
