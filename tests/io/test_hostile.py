"""Hostile and odd image folders and zips: entry names, permissions, bombs, FIFOs, dead parents.

Every file here is built on the fly and kept small: a "bomb" is a zip entry of tens of MB
of zeros, compressed to well under 1 MB and written in chunks, or a sparse file. The
tests check behaviour (a clear error or a skip with its reason, bytes never inflated or
read past the cap), not memory or time; ``benchmarks/bench_hostile.py`` measures memory
on real-size bombs.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ferclean.cleaning import CleaningPlan, Rule, audit_and_clean, restore_from
from ferclean.cli import main
from ferclean.dataset import FaceDataset
from ferclean.errors import BadInputError
from ferclean.io import folder, load, save
from ferclean.io.folder import MAX_IMAGE_BYTES, copy_files, read_folder, write_folder
from ferclean.io.npz import read_npz, write_npz

BOMB = "train/happy/Training_99.jpg"


def png(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (48, 48), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


GOOD = {
    "test/sad/PrivateTest_2.png": png(2),
    "train/angry/Training_3.png": png(3),
    "train/happy/Training_5.png": png(5),
}


def put_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def put_zip(path: Path, files: dict[str, bytes], *,
            compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def add_zero_entry(path: Path, name: str, n_bytes: int, compression: int) -> None:
    """Append an entry of ``n_bytes`` zeros, written in 1 MiB chunks (never held whole)."""
    chunk = bytes(1 << 20)
    info = zipfile.ZipInfo(name)
    info.compress_type = compression
    with zipfile.ZipFile(path, "a") as zf:
        with zf.open(info, "w") as fh:
            for _ in range(n_bytes >> 20):
                fh.write(chunk)


def declare_size(path: Path, name: str, size: int) -> None:
    """Make the zip lie: set ``name``'s uncompressed size in both of its headers."""
    raw = bytearray(path.read_bytes())
    encoded = name.encode()
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(name).header_offset
    struct.pack_into("<I", raw, local + 22, size)  # local header: uncompressed size
    start = 0
    while True:
        start = raw.index(b"PK\x01\x02", start)
        name_len = struct.unpack_from("<H", raw, start + 28)[0]
        if bytes(raw[start + 46:start + 46 + name_len]) == encoded:
            struct.pack_into("<I", raw, start + 24, size)  # central: uncompressed size
            break
        start += 4
    path.write_bytes(bytes(raw))


class CountInflated:
    """Wraps a decompressor class so that a test can count the bytes it ever produced."""

    def __init__(self, make) -> None:
        self.make = make
        self.total = 0

    def __call__(self, *args, **kwargs):
        inner = self.make(*args, **kwargs)
        counter = self

        class Counted:
            def decompress(self, data, *rest):
                out = inner.decompress(data, *rest)
                counter.total += len(out)
                return out

            def __getattr__(self, attr):
                return getattr(inner, attr)

        return Counted()


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> dict[int, CountInflated]:
    counters = {
        zipfile.ZIP_DEFLATED: CountInflated(zlib.decompressobj),
        zipfile.ZIP_BZIP2: CountInflated(bz2.BZ2Decompressor),
        zipfile.ZIP_LZMA: CountInflated(lzma.LZMADecompressor),
    }
    monkeypatch.setattr(folder.zlib, "decompressobj", counters[zipfile.ZIP_DEFLATED])
    monkeypatch.setattr(folder.bz2, "BZ2Decompressor", counters[zipfile.ZIP_BZIP2])
    monkeypatch.setattr(folder.lzma, "LZMADecompressor", counters[zipfile.ZIP_LZMA])
    # zipfile inflates through the same modules: reading through it is counted too
    monkeypatch.setattr(zipfile.zlib, "decompressobj", counters[zipfile.ZIP_DEFLATED])
    monkeypatch.setattr(zipfile.bz2, "BZ2Decompressor", counters[zipfile.ZIP_BZIP2])
    monkeypatch.setattr(zipfile.lzma, "LZMADecompressor", counters[zipfile.ZIP_LZMA])
    return counters


# ---------------------------------------------------------------------- entry names


ODD_NAMES = {
    "backslash": lambda n: n.replace("/", "\\"),
    "dot-slash": lambda n: "./" + n,
    "leading-slash": lambda n: "/" + n,
    "double-slash": lambda n: n.replace("/", "//"),
}


@pytest.mark.parametrize("style", sorted(ODD_NAMES))
def test_copy_files_reads_the_entries_the_reader_listed(tmp_path: Path, style: str) -> None:
    src = put_zip(tmp_path / "odd.zip", {ODD_NAMES[style](k): v for k, v in GOOD.items()})
    ds = read_folder(src)
    assert ds.ids.tolist() == sorted(GOOD)  # one normalised name whatever the zip wrote
    for suffix in (".zip", ""):
        out = copy_files(ds[[0, 2]], tmp_path / f"copy{suffix}")
        back = read_folder(out)
        assert back.ids.tolist() == [ds.ids[0], ds.ids[2]]
        assert back.equals(ds[[0, 2]])
    with zipfile.ZipFile(tmp_path / "copy.zip") as zf:  # the original bytes, renamed
        assert zf.read(ds.ids[0]) == GOOD[ds.ids[0]]


# Through the CLI for two spellings; copy_files, what clean and publish call, for all.
@pytest.mark.parametrize("style", ["backslash", "leading-slash"])
def test_clean_and_publish_agree_with_audit_on_odd_zip_names(
    tmp_path: Path, style: str, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {**GOOD, "train/angry/Training_4.png": GOOD["train/angry/Training_3.png"]}
    src = put_zip(tmp_path / "odd.zip", {ODD_NAMES[style](k): v for k, v in files.items()})
    assert main(["clean", str(src), "--plan", "dedup", "--out", str(tmp_path / "c")]) == 0
    assert restore_from(tmp_path / "c").equals(read_folder(src))
    if style == "backslash":  # publish copies the files as clean does: once is enough
        assert main(["publish", str(src), "--plan", "dedup", "--out", str(tmp_path / "r")]) == 0
        assert restore_from(tmp_path / "r").equals(read_folder(src))
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------------- permissions


def deny(monkeypatch: pytest.MonkeyPatch, module, func: str, denied: Path) -> None:
    """Make ``module.func`` fail with EACCES on ``denied`` (tests run as root too)."""
    real = getattr(module, func)

    def fake(path, *args, **kwargs):
        if Path(os.fsdecode(path)) == denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(module, func, fake)


def test_unreadable_subfolder_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = put_files(tmp_path / "in", GOOD)
    deny(monkeypatch, os, "scandir", root / "train" / "angry")  # what os.walk lists with
    with pytest.raises(BadInputError, match="permission denied") as info:
        read_folder(root)
    assert info.value.source == str(root) and "train/angry" in str(info.value)


def test_unreadable_image_file_names_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = put_files(tmp_path / "in", GOOD)
    deny(monkeypatch, os, "open", root / "train/happy/Training_5.png")
    with pytest.raises(BadInputError, match="permission denied") as info:
        read_folder(root)
    assert info.value.location == "train/happy/Training_5.png (entry 2)"
    assert str(root / "train") not in info.value.reason  # no second copy of the path
    ds = read_folder(root, on_bad="skip")
    assert len(ds) == 2 and ds.dropped.reason.str.contains("permission denied").all()


@pytest.mark.parametrize("kind", ["zip", "folder"])
def test_unreadable_input_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    src = (put_zip(tmp_path / "in.zip", GOOD) if kind == "zip"
           else put_files(tmp_path / "in", GOOD))
    deny(monkeypatch, os, "stat", src)
    with pytest.raises(BadInputError, match="cannot read: permission denied") as info:
        read_folder(src)
    assert str(info.value).startswith(str(src))


def test_cli_reports_an_unreadable_subfolder_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = put_files(tmp_path / "in", GOOD)
    deny(monkeypatch, os, "scandir", root / "test")
    assert main(["audit", str(root), "--out", str(tmp_path / "a")]) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "permission denied" in err and str(root) in err


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root reads files whatever their permissions")
def test_real_permissions(tmp_path: Path) -> None:
    root = put_files(tmp_path / "in", GOOD)
    (root / "train/angry").chmod(0)
    try:
        with pytest.raises(BadInputError, match="permission denied"):
            read_folder(root)
    finally:
        (root / "train/angry").chmod(0o755)


# ---------------------------------------------------------------------- bombs


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])
def test_zip_entry_declaring_a_huge_size_is_never_inflated(
    tmp_path: Path, compression: int, inflated: dict[int, CountInflated]
) -> None:
    src = put_zip(tmp_path / "bomb.zip", GOOD)
    add_zero_entry(src, BOMB, 16 << 20, compression)
    assert src.stat().st_size < 1 << 20  # a small file ...
    inflated[compression].total = 0
    ds = read_folder(src, on_bad="skip")
    assert inflated[compression].total < 64 << 10  # ... whose 16 MB entry stayed packed
    assert ds.ids.tolist() == sorted(GOOD)
    (reason,) = ds.dropped.reason
    assert "16,777,216 bytes" in reason and f"{MAX_IMAGE_BYTES:,}" in reason
    with pytest.raises(BadInputError, match="16,777,216 bytes") as info:
        read_folder(src)
    assert BOMB in str(info.value)


@pytest.mark.parametrize(
    "compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_zip_entry_lying_about_its_size_is_cut_at_the_cap(
    tmp_path: Path, compression: int, inflated: dict[int, CountInflated]
) -> None:
    src = put_zip(tmp_path / "bomb.zip", GOOD)
    add_zero_entry(src, BOMB, 16 << 20, compression)
    declare_size(src, BOMB, 2000)  # the headers claim 2 kB; the data inflates to 16 MB
    inflated[compression].total = 0
    ds = read_folder(src, on_bad="skip")
    # Never past the declared size (+1 byte, to see that there is more): the chunk
    # decompressors hand back at most what was asked.
    assert inflated[compression].total <= 2001
    assert ds.ids.tolist() == sorted(GOOD)
    assert "more data than" in ds.dropped.reason[0]


def test_zip_entry_with_impossible_deflate_ratio_is_not_inflated(
    tmp_path: Path, inflated: dict[int, CountInflated]
) -> None:
    src = put_zip(tmp_path / "bomb.zip", {**GOOD, BOMB: bytes(4 << 10)},
                  compression=zipfile.ZIP_DEFLATED)
    declare_size(src, BOMB, MAX_IMAGE_BYTES)  # 1 MiB from ~30 bytes: no deflate does that
    inflated[zipfile.ZIP_DEFLATED].total = 0
    ds = read_folder(src, on_bad="skip")
    assert "compression ratio" in ds.dropped.reason[0]
    assert inflated[zipfile.ZIP_DEFLATED].total < 4 * 2304 * 2  # only the three PNGs


class CountRead:
    def __init__(self, real) -> None:
        self.real = real
        self.total = 0

    def __call__(self, fd, n):
        data = self.real(fd, n)
        self.total += len(data)
        return data


def test_huge_file_in_a_folder_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = put_files(tmp_path / "in", GOOD)
    with open(root / BOMB, "wb") as fh:  # 2 GB of zeros that take no disk (sparse)
        fh.truncate(2 << 30)
    counter = CountRead(os.read)
    monkeypatch.setattr(folder.os, "read", counter)
    ds = read_folder(root, on_bad="skip")
    assert ds.ids.tolist() == sorted(GOOD)
    assert "2,147,483,648 bytes" in ds.dropped.reason[0]
    assert counter.total < 64 << 10  # the three PNGs, not a byte of the bomb


def test_file_growing_past_its_stat_size_is_cut_at_the_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /proc files, or a file appended to while it is read, report a size they do not hold.
    root = put_files(tmp_path / "in", GOOD)
    with open(root / BOMB, "wb") as fh:
        fh.truncate(8 * MAX_IMAGE_BYTES)
    real_fstat = os.fstat

    def small_fstat(fd):
        st = real_fstat(fd)
        values = list(st)
        values[stat.ST_SIZE] = min(st.st_size, 1000)
        return os.stat_result(values)

    counter = CountRead(os.read)
    monkeypatch.setattr(folder.os, "fstat", small_fstat)
    monkeypatch.setattr(folder.os, "read", counter)
    ds = read_folder(root, on_bad="skip")
    assert "more than" in ds.dropped.reason[0]
    assert counter.total <= MAX_IMAGE_BYTES + 1 + (16 << 10)  # the cap, and the PNGs


# ---------------------------------------------------------------------- non-regular files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_named_jpg_is_skipped_with_a_reason(tmp_path: Path) -> None:
    root = put_files(tmp_path / "in", GOOD)
    fifo = root / BOMB
    os.mkfifo(fifo)

    done = threading.Event()

    def unblock() -> None:  # should the reader wait on the FIFO, free it (and fail) at 10 s
        if not done.wait(10):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    started = time.monotonic()
    try:
        ds = read_folder(root, on_bad="skip")
    finally:
        done.set()
    assert time.monotonic() - started < 5
    assert ds.ids.tolist() == sorted(GOOD)
    assert ds.dropped.location.tolist() == [f"{BOMB} (entry 3)"]
    assert "not a regular file (a FIFO)" in ds.dropped.reason[0]
    with pytest.raises(BadInputError, match="not a regular file"):
        read_folder(root)


def test_symlink_to_a_device_is_skipped(tmp_path: Path) -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    root = put_files(tmp_path / "in", GOOD)
    (root / BOMB).symlink_to("/dev/zero")  # an endless file
    ds = read_folder(root, on_bad="skip")
    assert "not a regular file (a character device)" in ds.dropped.reason[0]


# ---------------------------------------------------------------------- workers


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out.update(int(c) for c in task.read_text().split())
    return out


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] not in ("Z", "X")  # a zombie has died; only its entry is left


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_decode_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    src = put_zip(tmp_path / "in.zip", GOOD)
    script = textwrap.dedent(
        """
        import sys, time
        from ferclean.io import folder
        folder._MIN_PARALLEL = 0
        decode = folder._decode_image
        def slow(data):
            time.sleep(0.5)
            return decode(data)
        folder._decode_image = slow
        folder.read_folder(sys.argv[1], workers=2)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(src)])
    try:
        deadline = time.monotonic() + 30
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert len(workers) >= 2, "the reader never started its workers"
        time.sleep(0.3)  # mid-read
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 5
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [w for w in workers if _alive(w)]
    for w in left:  # do not leave them behind for the rest of the suite
        os.kill(w, signal.SIGKILL)
    assert not left, f"decode workers {left} outlived their killed parent"


# ---------------------------------------------------------------------- empty datasets


EMPTY = FaceDataset(np.zeros((0, 48, 48), np.uint8), labels=np.zeros(0, np.int8))


@pytest.mark.parametrize("name", ["empty.zip", "empty", "empty.npz"])
def test_empty_dataset_round_trips(tmp_path: Path, name: str) -> None:
    out = save(EMPTY, tmp_path / name, image_format="png")
    back = load(out)
    assert len(back) == 0 and back.pixels.shape == (0, 48, 48) and back.equals(EMPTY)


def test_empty_npz_round_trips_exactly(tmp_path: Path) -> None:
    back = read_npz(write_npz(EMPTY, tmp_path / "e.npz"))
    assert back.equals(EMPTY, ids=True) and back.rows.dtype == np.int64


def test_empty_copy_round_trips(tmp_path: Path) -> None:
    src = put_zip(tmp_path / "in.zip", GOOD)
    empty = read_folder(src)[[]]
    for name in ("copy.zip", "copy"):
        assert len(read_folder(copy_files(empty, tmp_path / name))) == 0


def test_an_image_folder_with_only_empty_folders_is_empty(tmp_path: Path) -> None:
    assert len(read_folder(write_folder(EMPTY, tmp_path / "e.zip", image_format="png"))) == 0
    for layout in (["train"], ["fer2013/test/happy"]):
        root = tmp_path / "-".join(layout)
        for d in layout:
            (root / d).mkdir(parents=True)
        assert len(read_folder(root)) == 0


@pytest.mark.parametrize("kind", ["zip", "folder", "npz"])
def test_a_plan_removing_every_image_can_be_restored(tmp_path: Path, kind: str) -> None:
    same = dict.fromkeys(["train/happy/Training_1.png", "train/happy/Training_2.png"], png(1))
    ds = read_folder(put_zip(tmp_path / "in.zip", same))
    plan = CleaningPlan("drop-every-copy", (Rule("exact_duplicate", "drop_all"),))
    result = audit_and_clean(ds, plan)
    assert len(result.cleaned) == 0
    out = result.save(tmp_path / "out", format=kind)
    assert restore_from(out).equals(ds)


def test_a_readme_still_is_not_an_empty_dataset(tmp_path: Path) -> None:
    root = put_files(tmp_path / "in", {"train/happy/README.txt": b"hi"})
    with pytest.raises(BadInputError, match="no images found"):
        read_folder(root)


# ---------------------------------------------------------------------- npz


def test_npz_with_bool_or_nan_labels_is_bad_input(tmp_path: Path) -> None:
    arrays = {"pixels": np.zeros((2, 48, 48), np.uint8), "splits": np.zeros(2, np.int8),
              "ids": np.array(["a", "b"]), "rows": np.arange(2)}
    np.savez(tmp_path / "bool.npz", labels=np.array([True, False]), **arrays)
    np.savez(tmp_path / "nan.npz", labels=np.array([1.0, np.nan]), **arrays)
    with pytest.raises(BadInputError, match="labels must be integers; got a bool array"):
        read_npz(tmp_path / "bool.npz")
    with pytest.raises(BadInputError, match="got nan at position 1"):
        read_npz(tmp_path / "nan.npz")


def test_unreadable_or_special_npz_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_npz(EMPTY, tmp_path / "e.npz")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.npz")
        with pytest.raises(BadInputError, match="not a regular file"):
            read_npz(tmp_path / "fifo.npz")
    deny(monkeypatch, os, "stat", path)
    with pytest.raises(BadInputError, match="cannot read: permission denied"):
        read_npz(path)


# ---------------------------------------------------------------------- fuzz
FUZZ_BASE = None


def _fuzz_base() -> bytes:
    global FUZZ_BASE
    if FUZZ_BASE is None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for method, (name, data) in zip(
                (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2), GOOD.items(),
                strict=True,
            ):
                zf.writestr(name, data, compress_type=method)
        FUZZ_BASE = buf.getvalue()
    return FUZZ_BASE


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_zip_gives_a_dataset_or_one_clear_error(tmp_path: Path, data) -> None:
    raw = bytearray(_fuzz_base())
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del raw[data.draw(st.integers(0, len(raw))):]
    path = tmp_path / "fuzz.zip"
    path.write_bytes(bytes(raw))
    try:
        ds = read_folder(path, on_bad="skip")
    except BadInputError:
        return
    assert len(ds) <= 3 and ds.pixels.shape == (len(ds), 48, 48)


_SEP = st.sampled_from(["/", "\\", "//", "/./", "\\\\"])


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["", "/", "./", ".\\"]), _SEP, _SEP),
                min_size=3, max_size=3))
def test_every_spelling_of_a_name_is_read_and_copied_alike(tmp_path: Path, styles) -> None:
    files = {}
    for (lead, sep1, sep2), (name, blob) in zip(styles, GOOD.items(), strict=True):
        top, emotion, fname = name.split("/")
        files[f"{lead}{top}{sep1}{emotion}{sep2}{fname}"] = blob
    src = put_zip(tmp_path / "odd.zip", files)
    ds = read_folder(src)
    assert ds.ids.tolist() == sorted(GOOD)
    out = tmp_path / "copy.zip"
    out.unlink(missing_ok=True)
    assert read_folder(copy_files(ds, out)).equals(ds, ids=True)
