"""Tests of ferclean.io.folder: the image-folder form of FER-2013 (folder or zip)."""

from __future__ import annotations

import io
import os
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset
from ferclean.errors import BadInputError, BadInputWarning
from ferclean.io import folder
from ferclean.io.folder import LossyOutputWarning, read_folder, write_folder

# ---------------------------------------------------------------------- helpers


def make_dataset(n: int = 40, seed: int = 0) -> FaceDataset:
    """Random images with every split and label represented; ids are not file names."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, 48, 48), dtype=np.uint8)
    labels = np.arange(n) % len(EMOTIONS)
    splits = (np.arange(n) // len(EMOTIONS)) % len(SPLITS)
    return FaceDataset(pixels, labels=labels, splits=splits, source="synthetic")


def encode(img: np.ndarray | Image.Image, fmt: str = "PNG") -> bytes:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def rand_img(seed: int, size: tuple[int, int] = (48, 48)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=size[::-1], dtype=np.uint8)


def put_files(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def put_zip(path: Path, files: dict[str, bytes], *, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_input(tmp_path: Path, kind: str, files: dict[str, bytes]) -> Path:
    if kind == "zip":
        return put_zip(tmp_path / "in.zip", files)
    return put_files(tmp_path / "in", files)


def row_in_name(image_id: str) -> int:
    return int(re.search(r"_(\d+)\.\w+$", image_id).group(1))


def by_written_row(ds: FaceDataset) -> FaceDataset:
    """Reorder a dataset read back from write_folder by the row number in its file names."""
    return ds.subset(np.argsort([row_in_name(i) for i in ds.ids], kind="stable"))


def assert_same_data(a: FaceDataset, b: FaceDataset) -> None:
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.splits, b.splits)


def good_files(n: int = 6) -> dict[str, bytes]:
    """Valid entries spread over both top folders; sorted order is the dict order."""
    names = [
        "test/happy/PublicTest_1.png",
        "test/sad/PrivateTest_2.png",
        "train/angry/Training_3.png",
        "train/fear/Training_4.png",
        "train/happy/Training_5.png",
        "train/neutral/Training_6.png",
    ][:n]
    return {name: encode(rand_img(i)) for i, name in enumerate(names)}


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_png_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    ds = make_dataset()
    out = write_folder(ds, tmp_path / f"fer{suffix}", image_format="png")
    assert out == tmp_path / f"fer{suffix}"
    back = read_folder(out)
    assert len(back) == len(ds)
    assert back.source == str(out)
    # ids are the relative paths, sorted; rows their positions in that order
    assert back.ids.tolist() == sorted(back.ids.tolist())
    np.testing.assert_array_equal(back.rows, np.arange(len(ds)))
    assert back.dropped.empty
    first = back.ids[0]
    assert re.fullmatch(r"(train|test)/[a-z]+/(Training|PublicTest|PrivateTest)_\d+\.png", first)
    assert_same_data(by_written_row(back), ds)


def test_layout_of_written_folder(tmp_path: Path) -> None:
    ds = FaceDataset(
        np.zeros((3, 48, 48), np.uint8),
        labels=[3, 1, 6],
        splits=["Training", "PublicTest", "PrivateTest"],
        rows=[10, 11, 12],
    )
    out = write_folder(ds, tmp_path / "fer", image_format="png")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        ".ferclean-output",  # the output guard's mark: ferclean wrote this folder
        "test/disgust/PublicTest_11.png",
        "test/neutral/PrivateTest_12.png",
        "train/happy/Training_10.png",
    ]
    assert not list(tmp_path.glob(".ferclean-tmp-*"))  # the temporary folder is gone


def test_jpg_round_trip_is_close_and_warns(tmp_path: Path) -> None:
    ds = make_dataset()
    with pytest.warns(LossyOutputWarning, match="png"):
        out = write_folder(ds, tmp_path / "fer", quality=95)
    back = by_written_row(read_folder(out))
    assert all(i.endswith(".jpg") for i in back.ids)
    np.testing.assert_array_equal(back.labels, ds.labels)
    np.testing.assert_array_equal(back.splits, ds.splits)
    diff = np.abs(back.pixels.astype(int) - ds.pixels.astype(int)).mean()
    assert 0 < diff < 3


def test_png_does_not_warn(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_folder(make_dataset(5), tmp_path / "fer", image_format="png")


def test_folder_to_folder_keeps_file_names(tmp_path: Path) -> None:
    src = put_files(tmp_path / "src", good_files())
    first = read_folder(src)
    out = write_folder(first, tmp_path / "copy", image_format="png")
    second = read_folder(out)
    assert second.ids.tolist() == first.ids.tolist()
    assert_same_data(second, first)
    # a new extension keeps the stem
    with pytest.warns(LossyOutputWarning):
        jpg = write_folder(first, tmp_path / "copy.zip", image_format="jpg")
    assert read_folder(jpg).ids.tolist() == [i[:-4] + ".jpg" for i in first.ids]


def test_image_moved_to_another_split_gets_the_new_prefix(tmp_path: Path) -> None:
    ds = FaceDataset(
        np.zeros((2, 48, 48), np.uint8),
        labels=[0, 0],
        splits=["PublicTest", "Training"],
        ids=["train/angry/Training_77.jpg", "whatever/angry/training_5.JPG"],
    )
    out = write_folder(ds, tmp_path / "fer", image_format="png")
    back = read_folder(out)
    assert back.ids.tolist() == ["test/angry/PublicTest_77.png", "train/angry/training_5.png"]
    assert back.split_names.tolist() == ["PublicTest", "Training"]


def test_deterministic_zip_bytes(tmp_path: Path) -> None:
    ds = make_dataset()
    a = write_folder(ds, tmp_path / "a.zip", image_format="png")
    b = write_folder(ds, tmp_path / "b.zip", image_format="png")
    assert a.read_bytes() == b.read_bytes()
    with zipfile.ZipFile(a) as zf:
        infos = zf.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    with pytest.warns(LossyOutputWarning):
        c = write_folder(ds, tmp_path / "c.zip")
    with pytest.warns(LossyOutputWarning):
        d = write_folder(ds, tmp_path / "d.zip")
    assert c.read_bytes() == d.read_bytes()


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_refuses_to_overwrite(tmp_path: Path, suffix: str) -> None:
    target = tmp_path / f"fer{suffix}"
    write_folder(make_dataset(7), target, image_format="png")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_folder(make_dataset(3), target, image_format="png")
    assert len(read_folder(target)) == 7  # untouched
    write_folder(make_dataset(3), target, image_format="png", overwrite=True)
    assert len(read_folder(target)) == 3


def test_write_rejects_unlabeled_images(tmp_path: Path) -> None:
    ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[3, -1])
    with pytest.raises(ValueError, match="unlabeled"):
        write_folder(ds, tmp_path / "fer", image_format="png")
    assert not (tmp_path / "fer").exists()


def test_write_rejects_colliding_names(tmp_path: Path) -> None:
    ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[3, 3], rows=[5, 5])
    with pytest.raises(ValueError, match=r"train/happy/Training_5\.png"):
        write_folder(ds, tmp_path / "fer", image_format="png")
    assert not (tmp_path / "fer").exists()
    # names that differ only in case would collide on macOS and Windows
    ds = FaceDataset(
        np.zeros((2, 48, 48), np.uint8),
        labels=[3, 3],
        ids=["train/happy/Training_a.jpg", "train/happy/Training_A.jpg"],
    )
    with pytest.raises(ValueError, match="two images"):
        write_folder(ds, tmp_path / "fer.zip", image_format="png")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"image_format": "gif"}, "image_format"), ({"quality": 0}, "quality")],
)
def test_write_rejects_bad_options(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        write_folder(make_dataset(2), tmp_path / "fer", **kwargs)


def test_write_empty_dataset(tmp_path: Path) -> None:
    empty = FaceDataset(np.zeros((0, 48, 48), np.uint8), labels=np.zeros(0, int))
    out = write_folder(empty, tmp_path / "fer", image_format="png")
    # The output guard's mark, and the top folders alone: read back as an empty dataset.
    assert sorted(p.name for p in out.iterdir()) == [".ferclean-output", "test", "train"]
    assert not any(p.is_file() for p in (out / "test").rglob("*"))
    assert len(read_folder(out)) == 0


# ---------------------------------------------------------------------- layout rules


@pytest.mark.parametrize(
    ("name", "split", "label"),
    [
        ("train/happy/Training_1.png", "Training", "happy"),
        ("test/happy/PublicTest_1.png", "PublicTest", "happy"),
        ("test/happy/PrivateTest_1.png", "PrivateTest", "happy"),
        # the prefix wins over the top folder, in any case
        ("train/sad/privatetest_1.png", "PrivateTest", "sad"),
        ("Test/SAD/PUBLICTEST_1.PNG", "PublicTest", "sad"),
        # no prefix: the top folder decides
        ("train/fear/img1.png", "Training", "fear"),
        ("Training/fear/img1.png", "Training", "fear"),
        ("val/fear/img1.png", "PublicTest", "fear"),
        ("valid/fear/img1.png", "PublicTest", "fear"),
        ("validation/fear/img1.png", "PublicTest", "fear"),
        ("publictest/fear/img1.png", "PublicTest", "fear"),
        ("test/fear/img1.jpeg", "PrivateTest", "fear"),
        ("privatetest/Neutral/img1.png", "PrivateTest", "neutral"),
    ],
)
def test_split_and_label_from_path(tmp_path: Path, name: str, split: str, label: str) -> None:
    data = encode(rand_img(1), "JPEG" if name.lower().endswith("jpeg") else "PNG")
    ds = read_folder(put_files(tmp_path / "in", {name: data}))
    assert ds.split_names.tolist() == [split]
    assert ds.label_names.tolist() == [label]
    assert ds.ids.tolist() == [name]


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_extra_top_level_folder(tmp_path: Path, kind: str) -> None:
    files = {f"fer2013/{name}": data for name, data in good_files().items()}
    ds = read_folder(make_input(tmp_path, kind, files))
    assert ds.ids.tolist() == list(files)
    assert ds.split_counts() == {"Training": 4, "PublicTest": 1, "PrivateTest": 1}
    expected = read_folder(put_files(tmp_path / "plain", good_files()))
    assert_same_data(ds, expected)


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_ignores_non_images_hidden_files_and_macos_folders(tmp_path: Path, kind: str) -> None:
    files = dict(good_files(3))
    files.update(
        {
            "README.md": b"FER-2013",
            "train/happy/notes.txt": b"x",
            "train/happy/.hidden.png": b"not an image",
            "__MACOSX/train/happy/._Training_9.png": b"resource fork",
            ".cache/train/happy/Training_9.png": b"junk",
        }
    )
    path = make_input(tmp_path, kind, files)
    if kind == "zip":  # directory entries, as in the real download
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("train/", b"")
            zf.writestr("train/happy/", b"")
    ds = read_folder(path)
    assert ds.ids.tolist() == list(good_files(3))
    np.testing.assert_array_equal(ds.rows, [0, 1, 2])


def test_converts_colour_images_to_grey(tmp_path: Path) -> None:
    rgb = Image.fromarray(
        np.random.default_rng(3).integers(0, 256, (48, 48, 3), dtype=np.uint8), "RGB"
    )
    files = {
        "train/happy/Training_1.png": encode(rgb),
        "train/happy/Training_2.png": encode(rgb.convert("RGBA")),
        "train/happy/Training_3.png": encode(rgb.convert("P")),
    }
    ds = read_folder(put_files(tmp_path / "in", files))
    np.testing.assert_array_equal(ds.pixels[0], np.asarray(rgb.convert("L")))
    np.testing.assert_array_equal(ds.pixels[1], np.asarray(rgb.convert("L")))
    np.testing.assert_array_equal(ds.pixels[2], np.asarray(rgb.convert("P").convert("L")))


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_reads_compressed_zip_entries(tmp_path: Path, compression: int) -> None:
    files = good_files()
    ds = read_folder(put_zip(tmp_path / "in.zip", files, compression=compression))
    assert_same_data(ds, read_folder(put_files(tmp_path / "plain", files)))


# ---------------------------------------------------------------------- bad input


def corrupt_jpeg() -> bytes:
    data = encode(rand_img(9), "JPEG")
    return data[:20] + b"\x00" * 40 + data[60:200]  # mangled header, truncated body


BAD_ENTRIES = {
    # case: (entry name, bytes, reason pattern)
    "corrupt": ("train/happy/Training_45.jpg", corrupt_jpeg(), "cannot decode image"),
    "garbage": ("train/happy/Training_45.png", b"this is not an image", "cannot decode image"),
    "size": ("train/happy/Training_45.png", encode(rand_img(9, (64, 64))), "64x64, expected 48x48"),
    "size_wh": ("train/happy/Training_45.png", encode(rand_img(9, (64, 40))), "64x40, expected"),
    "emotion": ("train/contempt/Training_45.png", encode(rand_img(9)), "unknown emotion folder"),
    "structure": ("happy/Training_45.png", encode(rand_img(9)), r"not inside a <top>/<emotion>/"),
    "split": ("stuff/happy/img45.png", encode(rand_img(9)), "unknown split"),
}


def bad_input(tmp_path: Path, kind: str, case: str) -> tuple[Path, str, int, str]:
    """Good entries plus one bad one; returns path, bad entry name, its row, reason."""
    name, data, reason = BAD_ENTRIES[case]
    files = {**good_files(), name: data}
    row = sorted(files).index(name)
    return make_input(tmp_path, kind, files), name, row, reason


@pytest.mark.parametrize("kind", ["dir", "zip"])
@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_bad_entry_raise(tmp_path: Path, kind: str, case: str) -> None:
    path, name, row, reason = bad_input(tmp_path, kind, case)
    with pytest.raises(BadInputError, match=reason) as info:
        read_folder(path)
    message = str(info.value)
    assert str(path) in message and name in message  # names the file and the entry
    assert info.value.location == f"{name} (entry {row})"


@pytest.mark.parametrize("on_bad", ["skip", "report"])
@pytest.mark.parametrize("kind", ["dir", "zip"])
@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_bad_entry_skip_and_report(tmp_path: Path, kind: str, case: str, on_bad: str) -> None:
    path, name, row, reason = bad_input(tmp_path, kind, case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_folder(path, on_bad=on_bad)
    ours = [w for w in caught if issubclass(w.category, BadInputWarning)]
    assert len(ours) == (1 if on_bad == "report" else 0)
    if ours:
        assert name in str(ours[0].message)
    assert len(ds) == len(good_files())
    assert name not in ds.ids.tolist()
    expected_rows = [r for r in range(len(good_files()) + 1) if r != row]
    np.testing.assert_array_equal(ds.rows, expected_rows)  # the gap stays
    assert ds.dropped.location.tolist() == [f"{name} (entry {row})"]
    assert ds.dropped.source.tolist() == [str(path)]
    assert re.search(reason, ds.dropped.reason[0])
    assert_same_data(ds, read_folder(put_files(tmp_path / "good", good_files())))


def test_report_warning_class(tmp_path: Path) -> None:
    path, name, _, _ = bad_input(tmp_path, "zip", "corrupt")
    with pytest.warns(BadInputWarning, match=re.escape(name)):
        read_folder(path, on_bad="report")


def test_raise_names_the_first_bad_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = {
        **good_files(),
        "test/angry/PublicTest_0.png": b"broken",  # sorted first, found while decoding
        "train/unknown/Training_0.png": encode(rand_img(0)),  # found while listing
    }
    path = put_files(tmp_path / "in", files)
    for workers in (1, 2):
        monkeypatch.setattr(folder, "_MIN_PARALLEL", 0)
        with pytest.raises(BadInputError, match="PublicTest_0"):
            read_folder(path, workers=workers)


def test_crc_error_in_zip_is_a_bad_entry(tmp_path: Path) -> None:
    files = good_files()
    path = put_zip(tmp_path / "in.zip", files)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("train/angry/Training_3.png")
    start = info.header_offset + 30 + len(info.filename.encode())
    raw[start + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    ds = read_folder(path, on_bad="skip")
    assert ds.dropped.location.tolist() == ["train/angry/Training_3.png (entry 2)"]
    assert "CRC" in ds.dropped.reason[0]


def test_all_entries_bad_gives_empty_dataset(tmp_path: Path) -> None:
    path = put_files(tmp_path / "in", {"train/happy/a.png": b"x", "train/sad/b.png": b"y"})
    ds = read_folder(path, on_bad="skip")
    assert len(ds) == 0 and ds.pixels.shape == (0, 48, 48)
    assert len(ds.dropped) == 2


@pytest.mark.parametrize("kind", ["dir", "zip", "readme-only"])
def test_no_images(tmp_path: Path, kind: str) -> None:
    if kind == "dir":
        path = tmp_path / "empty"
        path.mkdir()
    elif kind == "zip":
        path = put_zip(tmp_path / "empty.zip", {})
    else:
        path = put_files(tmp_path / "in", {"README.md": b"hi", "train/happy/x.txt": b"x"})
    with pytest.raises(BadInputError, match="no images found") as info:
        read_folder(path)
    assert str(path) in str(info.value)


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.zip"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        read_folder(missing)


def test_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("emotion,pixels,Usage\n")
    with pytest.raises(BadInputError, match="not a folder or a readable zip") as info:
        read_folder(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("on_bad", ["ignore", None])
def test_rejects_bad_on_bad(tmp_path: Path, on_bad: object) -> None:
    with pytest.raises(ValueError, match="on_bad"):
        read_folder(tmp_path, on_bad=on_bad)


@pytest.mark.parametrize("workers", [0, -1, 1.5, "2"])
def test_rejects_bad_workers(tmp_path: Path, workers: object) -> None:
    with pytest.raises(ValueError, match="workers"):
        read_folder(tmp_path, workers=workers)


# ---------------------------------------------------------------------- parallel paths


@pytest.mark.parametrize("kind", ["dir", "zip"])
def test_workers_give_identical_results(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = make_dataset(120, seed=4)
    suffix = ".zip" if kind == "zip" else ""
    path = write_folder(ds, tmp_path / f"fer{suffix}", image_format="png")
    if kind == "dir":  # two bad entries in different chunks
        (path / "train/angry/Training_bad.png").write_bytes(b"junk")
        (path / "test/sad/PublicTest_big.png").write_bytes(encode(rand_img(1, (50, 48))))
    # force the pool even for this small input
    monkeypatch.setattr(folder, "_MIN_PARALLEL", 0)
    one = read_folder(path, workers=1, on_bad="skip")
    two = read_folder(path, workers=2, on_bad="skip")
    assert one.equals(two, ids=True)
    np.testing.assert_array_equal(one.rows, two.rows)
    assert one.dropped.equals(two.dropped)
    assert len(one) == 120
    assert_same_data(by_written_row(two), ds)
    # writing with a pool gives the same bytes as writing in-process
    a = write_folder(two, tmp_path / "a.zip", image_format="png", workers=1)
    b = write_folder(two, tmp_path / "b.zip", image_format="png", workers=2)
    assert a.read_bytes() == b.read_bytes()
    c = write_folder(two, tmp_path / "c", image_format="png", workers=2)
    assert read_folder(c).equals(two, ids=True)


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = write_folder(make_dataset(5), tmp_path / "fer", image_format="png", progress=True)
    read_folder(out, progress=True)
    err = capsys.readouterr().err
    assert "write fer" in err and "read fer" in err and "5/5" in err


def test_chunks_cover_range() -> None:
    for n in (1, 2, 7, 100, 35887):
        for k in (1, 3, 8, 200):
            bounds = folder._chunks(n, k)
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a < b for a, b in bounds)
            assert all(b == c for (_, b), (c, _) in zip(bounds[:-1], bounds[1:], strict=True))


# ---------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.skipif(not os.environ.get("FERCLEAN_DATA"), reason="FERCLEAN_DATA not set")
def test_real_fer2013_zip() -> None:
    path = os.environ["FERCLEAN_DATA"]
    ds = read_folder(path)
    assert len(ds) == 35887
    assert ds.split_counts() == {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
    train = ds.label_counts("Training")
    assert [train[e] for e in EMOTIONS] == [3995, 436, 4097, 7215, 4830, 3171, 4965]
    assert ds.dropped.empty
    with zipfile.ZipFile(path) as zf:
        names = sorted(i.filename for i in zf.infolist() if not i.is_dir())
    assert ds.ids.tolist() == names
    np.testing.assert_array_equal(ds.rows, np.arange(len(ds)))
    assert ds.pixels.dtype == np.uint8 and ds.pixels.shape == (35887, 48, 48)
    # every split prefix agrees with its top folder
    tops = np.array([i.split("/")[0] for i in ds.ids])
    assert set(tops[ds.split_mask("Training")]) == {"train"}
    assert set(tops[~ds.split_mask("Training")]) == {"test"}


def test_pool_without_fork(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # With other threads running, forking is unsafe: the pool must use forkserver/spawn.
    ds = make_dataset(30, seed=5)
    path = write_folder(ds, tmp_path / "fer.zip", image_format="png")
    monkeypatch.setattr(folder, "_MIN_PARALLEL", 0)
    monkeypatch.setattr(folder.threading, "active_count", lambda: 2)
    back = read_folder(path, workers=2)
    assert back.equals(read_folder(path, workers=1), ids=True)
    again = write_folder(back, tmp_path / "again.zip", image_format="png", workers=2)
    assert again.read_bytes() == path.read_bytes()


def test_duplicate_zip_entry_is_a_bad_entry(tmp_path: Path) -> None:
    path = put_zip(tmp_path / "in.zip", good_files(2))
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(path, "a") as zf:
        zf.writestr("test/happy/PublicTest_1.png", encode(rand_img(7)))
    ds = read_folder(path, on_bad="skip")
    assert ds.ids.tolist() == list(good_files(2))
    assert ds.dropped.reason.str.contains("duplicate entry").tolist() == [True]
    np.testing.assert_array_equal(ds.rows, [0, 2])


def test_backslashes_in_zip_names(tmp_path: Path) -> None:
    # Some Windows tools write "\" as the separator inside zips.
    files = good_files(2)
    path = put_zip(tmp_path / "in.zip", {k.replace("/", "\\"): v for k, v in files.items()})
    ds = read_folder(path)
    assert ds.ids.tolist() == list(files)
    assert_same_data(ds, read_folder(put_files(tmp_path / "plain", files)))
