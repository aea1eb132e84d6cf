"""The Parquet form: exact round trips, shards, streaming re-sharding, the bad-input policy.

Every file is built on the fly from a few dozen images.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from ferclean._outputs import MARKER, OutputExistsError, OutputPathError  # noqa: E402
from ferclean.cli import main  # noqa: E402
from ferclean.dataset import FaceDataset  # noqa: E402
from ferclean.errors import BadInputError, BadInputWarning  # noqa: E402
from ferclean.io import convert, detect_format, load, save  # noqa: E402
from ferclean.io import parquet as pqio  # noqa: E402
from ferclean.io.parquet import (  # noqa: E402
    PARQUET_COLUMNS,
    PIXELS_WIDTH,
    MissingDependencyError,
    convert_parquet,
    dataset_table,
    parquet_checksum,
    parquet_shards,
    read_parquet,
    validate_parquet_table,
    write_parquet,
)
from helpers import make_random_dataset  # noqa: E402


def dataset(n: int = 30, seed: int = 0) -> FaceDataset:
    """Labels with -1, all three splits, ids that are not the rows, rows not 0..n-1."""
    base = make_random_dataset(n, seed)
    rng = np.random.default_rng(seed)
    labels = rng.integers(-1, 7, n)
    return FaceDataset(base.pixels, labels=labels, splits=rng.integers(0, 3, n),
                       ids=[f"img/{i:03d}.png" for i in range(n)],
                       rows=np.arange(n) * 3 + 7, source="made-up.csv")


def same(a: FaceDataset, b: FaceDataset) -> bool:
    return (a.equals(b, ids=True) and np.array_equal(a.rows, b.rows)
            and np.array_equal(a.synthetic, b.synthetic))


def write_raw(table, path: Path) -> Path:
    pq.write_table(table, path)
    return path


# ---------------------------------------------------------------------- round trips
def test_single_file_round_trip_is_exact(tmp_path):
    ds = dataset()
    out = write_parquet(ds, tmp_path / "d.parquet")
    back = read_parquet(out)
    assert same(back, ds)
    assert back.source == str(out)  # like every reader: where it was read from
    schema = pq.read_schema(out)
    assert schema.names == list(PARQUET_COLUMNS)  # no synthetic column: none is synthetic
    assert str(schema.field("pixels").type) == f"fixed_size_binary[{PIXELS_WIDTH}]"
    assert str(schema.field("label").type) == "int8"
    meta = json.loads(schema.metadata[b"ferclean"])
    assert meta == {"format": "ferclean-parquet", "version": 1, "image_size": 48,
                    "n_images": 30, "source": "made-up.csv"}


def test_shards_round_trip_in_order_with_synthetic(tmp_path):
    ds = dataset(23)
    flags = np.zeros(23, bool)
    flags[[4, 20]] = True
    ds = FaceDataset(ds.pixels, labels=ds.labels, splits=ds.splits, ids=ds.ids, rows=ds.rows,
                     source=ds.source, synthetic=flags)
    out = write_parquet(ds, tmp_path / "shards", shard_size=10)
    files = parquet_shards(out)
    assert [f.name for f in files] == [f"part-0000{i}.parquet" for i in range(3)]
    assert [pq.read_metadata(f).num_rows for f in files] == [10, 10, 3]
    assert all("synthetic" in pq.read_schema(f).names for f in files)  # one schema for all
    assert (out / MARKER).exists()
    assert json.loads((out / "_ferclean.json").read_text()) == {
        "format": "ferclean-parquet-shards", "version": 1, "n_images": 23, "n_shards": 3,
        "shard_size": 10, "source": "made-up.csv"}
    back = load(out)
    assert same(back, ds) and back.synthetic[[4, 20]].all()
    assert parquet_checksum(out) == ds.checksum()


def test_empty_dataset_round_trips(tmp_path):
    empty = dataset()[[]]
    for target in (tmp_path / "e.parquet", tmp_path / "e"):
        back = read_parquet(write_parquet(empty, target))
        assert len(back) == 0 and back.pixels.shape == (0, 48, 48)


def test_list_and_binary_pixel_columns_are_read(tmp_path):
    ds = dataset(5)
    table = dataset_table(ds)
    flat = ds.pixels.reshape(5, PIXELS_WIDTH)
    as_list = table.set_column(4, "pixels", pa.array(list(flat), pa.list_(pa.uint8())))
    as_binary = table.set_column(4, "pixels", pa.array([r.tobytes() for r in flat],
                                                       pa.binary()))
    for i, t in enumerate((as_list, as_binary)):
        assert same(read_parquet(write_raw(t, tmp_path / f"{i}.parquet")), ds)


def test_detect_format_and_the_io_entry_points(tmp_path):
    ds = dataset()
    assert detect_format("x.parquet") == detect_format("x.PQ") == "parquet"
    shards = save(ds, tmp_path / "s", format="parquet", shard_size=7)
    assert detect_format(shards) == "parquet"
    image_folder = save(make_random_dataset(), tmp_path / "img", format="folder",
                        image_format="png")
    assert detect_format(image_folder) == "folder"  # subfolders: an image folder
    assert detect_format(tmp_path / "new") == "folder"
    single = save(ds, tmp_path / "d.pq")
    assert same(load(single), ds)
    with pytest.raises(ValueError, match="shard_size is for the parquet form"):
        save(ds, tmp_path / "d.npz", shard_size=3)
    with pytest.raises(ValueError, match="shards go in a folder"):
        write_parquet(ds, tmp_path / "x.parquet", shard_size=3)
    npz = save(ds, tmp_path / "d.npz")
    assert convert(npz, tmp_path / "c", shard_size=8).equals(ds)
    assert len(parquet_shards(tmp_path / "c")) == 4
    assert same(load(tmp_path / "c"), load(npz))


# ---------------------------------------------------------------------- streaming
def test_parquet_to_shards_streams_one_shard_at_a_time(tmp_path, monkeypatch):
    ds = dataset(40)
    src = tmp_path / "src.parquet"
    write_raw(dataset_table(ds), src)
    pq.write_table(dataset_table(ds), src, row_group_size=6)  # many small row groups
    held = []
    real_add = pqio._ShardWriter.add

    def add(self, table):
        held.append(self.pending_rows + table.num_rows)
        real_add(self, table)

    monkeypatch.setattr(pqio._ShardWriter, "add", add)
    monkeypatch.setattr(pqio, "_ROW_GROUP_SIZE", 6)

    def no_whole_read(*args, **kwargs):
        raise AssertionError("a streamed conversion read a whole file")

    monkeypatch.setattr(pq.ParquetFile, "read", no_whole_read)
    assert convert(src, tmp_path / "out", shard_size=9) is None
    assert max(held) <= 9 + 6  # a shard's rows and one batch, never the dataset
    monkeypatch.undo()
    assert [pq.read_metadata(f).num_rows for f in parquet_shards(tmp_path / "out")] == [
        9, 9, 9, 9, 4]
    assert same(read_parquet(tmp_path / "out"), ds)


def test_convert_cli_writes_shards_through_the_output_guard(tmp_path, capsys):
    ds = dataset()
    src = save(ds, tmp_path / "d.npz")
    out = tmp_path / "shards"
    assert main(["convert", str(src), f"{out}/", "--shard-size", "8"]) == 0
    assert "wrote 30 images" in capsys.readouterr().out
    assert len(parquet_shards(out)) == 4 and (out / MARKER).exists()
    # refused: an existing output without --overwrite, and its own input even with it
    assert main(["convert", str(src), str(out), "--shard-size", "8"]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["convert", str(out), str(out), "--shard-size", "5", "--overwrite"]) == 1
    assert "input of this command" in capsys.readouterr().err
    assert main(["convert", str(out), str(tmp_path / "again"), "--shard-size", "5"]) == 0
    assert "wrote 30 images" in capsys.readouterr().out
    assert main(["convert", str(src), str(out), "--shard-size", "16", "--overwrite"]) == 0
    assert len(parquet_shards(out)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "d.npz", "shards"]
    with pytest.raises(SystemExit):  # argparse refuses it
        main(["convert", str(src), str(out), "--shard-size", "0"])
    with pytest.raises(OutputPathError):
        convert_parquet(out, out / "inner", shard_size=3)
    user = tmp_path / "notes"
    user.mkdir()
    (user / "mine.txt").write_text("keep")
    with pytest.raises(Exception, match="ferclean did not write"):
        write_parquet(ds, user, overwrite=True)
    with pytest.raises(OutputExistsError):
        write_parquet(ds, out)


# ---------------------------------------------------------------------- bad input
def bad_tables(tmp_path: Path) -> dict[str, tuple[Path, str, str]]:
    """file -> (path, location, the problem's words) for one bad row in each."""
    ds = dataset(6)
    table = dataset_table(ds)
    flat = ds.pixels.reshape(6, PIXELS_WIDTH)
    short = [r.tobytes() for r in flat]
    short[2] = short[2][:-1]
    cases = {
        "width": (table.set_column(4, "pixels", pa.array(short, pa.binary())), "row 2",
                  "pixels hold 2303 bytes; expected 2304"),
        "null": (table.set_column(3, "label", pa.array([0, 1, None, 2, 3, 4], pa.int8())),
                 "row 2", "label is missing (null)"),
        "split": (table.set_column(2, "split", pa.array(
            ["Training", "Training", "Test", "PublicTest", "Training", "Training"])),
            "row 2", "split 'Test' is not one of Training, PublicTest, PrivateTest"),
        "label": (table.set_column(3, "label", pa.array([0, 1, 9, 2, 3, 4], pa.int8())),
                  "row 2", "label 9 is not in -1..6"),
        "duplicate": (table.set_column(0, "row", pa.array([5, 6, 5, 7, 8, 9], pa.int64())),
                      "row 2", "row 5 is not unique"),
    }
    return {name: (write_raw(t, tmp_path / f"{name}.parquet"), where, words)
            for name, (t, where, words) in cases.items()}


def test_bad_rows_raise_naming_file_row_and_problem(tmp_path):
    for path, where, words in bad_tables(tmp_path).values():
        with pytest.raises(BadInputError) as info:
            read_parquet(path)
        assert str(info.value).startswith(f"{path}: {where}: ")
        assert words in str(info.value)


def test_bad_rows_skip_and_report(tmp_path):
    for path, where, words in bad_tables(tmp_path).values():
        ds = read_parquet(path, on_bad="skip")
        assert len(ds) == 5 and "img/002.png" not in ds.ids
        assert ds.dropped[["source", "location"]].values.tolist() == [[str(path), where]]
        assert words in ds.dropped.reason[0]
        with pytest.warns(BadInputWarning, match="dropped 1 bad record"):
            assert len(load(path, on_bad="report")) == 5
    # a streamed conversion applies the same policy
    path = bad_tables(tmp_path)["label"][0]
    assert convert_parquet(path, tmp_path / "ok", shard_size=2, on_bad="skip") == 5
    with pytest.raises(BadInputError, match="row 2: label 9"):
        convert_parquet(path, tmp_path / "no", shard_size=2)
    assert not (tmp_path / "no").exists()  # atomic: nothing left behind


def test_duplicate_rows_across_shards(tmp_path):
    ds = dataset(6)
    out = write_parquet(FaceDataset(ds.pixels, rows=[0, 1, 2, 3, 1, 5]), tmp_path / "s",
                        shard_size=3)
    with pytest.raises(BadInputError, match=r"part-00001\.parquet: row 1: row 1 is not unique"):
        read_parquet(out)
    assert read_parquet(out, on_bad="skip").rows.tolist() == [0, 1, 2, 3, 5]


def test_whole_file_problems_always_raise(tmp_path):
    ds = dataset(6)
    table = dataset_table(ds)
    no_label = write_raw(table.drop_columns(["label"]), tmp_path / "nolabel.parquet")
    with pytest.raises(BadInputError, match="missing column.s. label"):
        read_parquet(no_label, on_bad="skip")
    float_label = write_raw(table.set_column(3, "label", pa.array(np.zeros(6))),
                            tmp_path / "float.parquet")
    with pytest.raises(BadInputError, match="column label is double; expected an integer"):
        read_parquet(float_label)
    narrow = write_raw(table.set_column(4, "pixels", pa.array([b"x" * 100] * 6,
                                                              pa.binary(100))),
                       tmp_path / "narrow.parquet")
    with pytest.raises(BadInputError, match="holds 100 bytes per image; expected 2304"):
        read_parquet(narrow, on_bad="skip")
    fake = tmp_path / "fake.parquet"
    fake.write_text("emotion,pixels,Usage\n")
    with pytest.raises(BadInputError, match=r"fake\.parquet: not a Parquet file"):
        load(fake)
    truncated = tmp_path / "t.parquet"
    pq.write_table(table.slice(0, 4).replace_schema_metadata(pqio._file_metadata(6, None)),
                   truncated)
    with pytest.raises(BadInputError, match="holds 4 images but was written with 6"):
        read_parquet(truncated)


def test_shard_folder_with_a_gap_or_a_foreign_file(tmp_path):
    ds = dataset(12)
    out = write_parquet(ds, tmp_path / "s", shard_size=3)
    (out / "part-00002.parquet").rename(tmp_path / "aside.parquet")
    with pytest.raises(BadInputError, match=r"s/: part-00002\.parquet: missing: the shards "
                       "have a gap"):
        read_parquet(out)
    (tmp_path / "aside.parquet").rename(out / "part-00002.parquet")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BadInputError, match=r"notes\.txt: a foreign file"):
        parquet_shards(out)
    (out / "notes.txt").unlink()
    (out / "part-00003.parquet").unlink()  # the last shard: only _ferclean.json knows
    with pytest.raises(BadInputError, match="part-00003.parquet: missing"):
        load(out)
    write_raw(dataset_table(ds[:2]), out / "part-00003.parquet")
    with pytest.raises(BadInputError, match="lists 12 images but the shards hold 11"):
        load(out)


def test_validate_parquet_table_takes_a_pandas_partition():
    frame = dataset_table(dataset(4)).to_pandas()
    assert validate_parquet_table(frame, "p.parquet").num_rows == 4
    frame.loc[1, "split"] = "Validation"
    with pytest.raises(BadInputError, match="p.parquet: row 11: split 'Validation'"):
        validate_parquet_table(frame, "p.parquet", offset=10)


# ---------------------------------------------------------------------- no pyarrow
def test_without_pyarrow_io_imports_and_parquet_says_what_to_install(tmp_path, monkeypatch,
                                                                     capsys):
    made = write_parquet(dataset(), tmp_path / "made.parquet")
    code = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "pyarrow" or name.startswith("pyarrow."):
                    raise ImportError("blocked")
        sys.meta_path.insert(0, Block())
        import ferclean.io
        from ferclean.io import detect_format, load
        assert detect_format("x.parquet") == "parquet"
        try:
            load({str(tmp_path / "x.parquet")!r})
        except ImportError as exc:
            print(exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert "pip install 'ferclean[dask]'" in done.stdout
    for name in ("pyarrow", "pyarrow.compute", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ferclean\[dask\]'"):
        write_parquet(dataset(), tmp_path / "y.parquet")
    assert main(["convert", str(made), str(tmp_path / "o.npz")]) == 1
    assert "needs pyarrow" in capsys.readouterr().err


def test_clean_keeps_the_parquet_form_and_restores(tmp_path):
    from ferclean.cleaning import audit_and_clean, restore_from
    from ferclean.demo import demo_dataset

    shards = write_parquet(demo_dataset(n_faces=300), tmp_path / "shards", shard_size=200)
    ds = load(shards)
    out = audit_and_clean(ds, "dedup").save(tmp_path / "clean")
    assert (out / "cleaned.parquet").is_file()
    back = restore_from(out)
    assert back.equals(ds, ids=True) and np.array_equal(back.rows, ds.rows)
