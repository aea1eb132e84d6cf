"""The output guard: no command writes over an input, a folder it did not write or another
run's output; outputs are replaced as a unit; full disks and refused writes are one line."""

from __future__ import annotations

import errno
import importlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ferclean._outputs import (
    MARKER,
    OutputError,
    OutputExistsError,
    OutputPathError,
    check_not_input,
    check_output,
    clear_stale,
    output_dir,
    output_file,
)
from ferclean.cli import main
from ferclean.dataset import FaceDataset
from ferclean.findings import AuditResult, read_findings
from ferclean.io import load, save
from helpers import file_digest, make_random_dataset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small() -> FaceDataset:
    """42 random images, a few of them exact copies (so dedup removes some)."""
    ds = make_random_dataset(42, seed=3)
    pixels = ds.pixels.copy()
    pixels[[5, 20, 33]] = pixels[[1, 2, 3]]
    return FaceDataset(pixels, labels=ds.labels, splits=ds.splits)


@pytest.fixture
def csv(tmp_path, small) -> Path:
    return save(small, tmp_path / "d.csv")


def _audit(src: Path, out: Path, *extra: str) -> int:
    return main(["audit", str(src), "--only", "exact_duplicate", "--out", str(out), *extra])


def _clean(src: Path, out: Path | str, *extra: str) -> int:
    return main(["clean", str(src), "--plan", "dedup", "--out", str(out), *extra])


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".ferclean-*") if p.name != MARKER)


def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ferclean {command}: error: "), err
    return lines[0]


# ---------------------------------------------------------------------- never an input
def test_write_plan_never_replaces_the_input(csv, tmp_path, capsys):
    before = file_digest(csv)
    assert _clean(csv, tmp_path / "c", "--write-plan", str(csv)) == 1
    assert "refusing to write" in _one_error_line(capsys.readouterr().err, "clean")
    assert file_digest(csv) == before and not (tmp_path / "c").exists()  # refused first


def test_write_plan_inside_out_is_refused_and_out_stays_restorable(csv, tmp_path, capsys):
    out = tmp_path / "c"
    assert _clean(csv, out, "--write-plan", str(out / "manifest.json")) == 1
    assert "another output of this command" in capsys.readouterr().err
    assert _clean(csv, out) == 0
    assert main(["clean", str(csv), "--plan", "dedup", "--out", str(out), "--overwrite",
                 "--write-plan", str(out / "manifest.json")]) == 1
    assert main(["restore", str(out), "--out", str(tmp_path / "back.csv")]) == 0
    assert load(tmp_path / "back.csv").equals(load(csv))


def test_existing_files_are_replaced_only_with_overwrite(csv, tmp_path, capsys):
    plan, html = tmp_path / "plan.json", tmp_path / "r.html"
    plan.write_text("mine")
    html.write_text("mine")
    assert _clean(csv, tmp_path / "c", "--write-plan", str(plan)) == 1
    assert _audit(csv, tmp_path / "a", "--html", str(html)) == 1
    assert plan.read_text() == html.read_text() == "mine"
    assert "--overwrite" in capsys.readouterr().err
    assert _clean(csv, tmp_path / "c", "--write-plan", str(plan), "--overwrite") == 0
    assert json.loads(plan.read_text())["name"] == "dedup"
    assert f"replaced {plan}" in capsys.readouterr().err  # one line says so


def test_restore_never_writes_over_the_folder_it_reads(csv, tmp_path, capsys):
    out = tmp_path / "c"
    assert _clean(csv, out, "--format", "npz") == 0
    assert main(["restore", str(out), "--out", str(out), "--overwrite"]) == 1
    assert "refusing to write" in capsys.readouterr().err
    assert (out / "manifest.json").exists()


def test_paths_are_compared_resolved(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "d.csv").write_text("x")
    (tmp_path / "link").symlink_to(data)
    for output in (data / "d.csv", tmp_path / "link" / "d.csv", data / "sub" / ".." / "d.csv",
                   data / "audit", tmp_path):  # the input, via a link, inside it, holding it
        with pytest.raises(OutputPathError, match="refusing to write"):
            check_not_input(output, [data / "d.csv", data])
    os.link(data / "d.csv", tmp_path / "hard.csv")  # another name of the same file
    with pytest.raises(OutputPathError, match="it is an input"):
        check_not_input(tmp_path / "hard.csv", [data / "d.csv"])


def _jax():
    for module in ("jax", "flax", "optax"):
        pytest.importorskip(module)


def test_train_and_evaluate_never_write_into_the_input_folder(tmp_path, small, capsys):
    _jax()
    fin = save(small, tmp_path / "fin", image_format="png")
    ckpt = tmp_path / "ck"  # refused before it is read: it need not hold a checkpoint
    ckpt.mkdir()
    before = sorted(p.name for p in fin.rglob("*"))
    args = ["--epochs", "1", "--batch-size", "32", "--model", "cnn_mha"]
    assert main(["train", str(fin), "--out", str(fin), *args]) == 1
    assert main(["train", str(fin), "--out", str(fin / "run"), "--overwrite", *args]) == 1
    assert main(["evaluate", str(fin), "--checkpoint", str(ckpt), "--out", str(fin)]) == 1
    assert main(["evaluate", str(fin), "--checkpoint", str(ckpt), "--out", str(ckpt)]) == 1
    assert capsys.readouterr().err.count("refusing to write") == 4
    assert sorted(p.name for p in fin.rglob("*")) == before
    assert _audit(fin, tmp_path / "a") == 0  # the input still reads


def test_train_out_file_is_a_one_line_error(tmp_path, csv, capsys):
    _jax()
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    assert main(["train", str(csv), "--out", str(target), "--epochs", "1"]) == 1
    assert "a file of that name exists" in _one_error_line(capsys.readouterr().err, "train")
    assert target.read_text() == "mine"


# ---------------------------------------------------------------------- not another's output
def test_an_earlier_audit_is_replaced_only_with_overwrite(csv, tmp_path, capsys):
    out = tmp_path / "a"
    assert _audit(csv, out) == 0
    first = (out / "summary.json").read_text()
    assert _audit(csv, out, "--skip", "outlier") == 1
    assert "exists (an earlier ferclean output)" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == first
    assert main(["audit", str(csv), "--only", "class_imbalance", "--out", str(out),
                 "--overwrite", "--json"]) == 0
    assert f"replaced {out}/, an earlier ferclean audit" in capsys.readouterr().err
    assert set(json.loads((out / "summary.json").read_text())["issues"]) == {"class_imbalance"}


def test_overwrite_never_deletes_a_folder_ferclean_did_not_write(csv, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("years of work")
    for argv in (["clean", str(csv), "--plan", "dedup", "--out", str(mine), "--overwrite"],
                 ["audit", str(csv), "--only", "exact_duplicate", "--out", str(mine),
                  "--overwrite"],
                 ["publish", str(csv), "--plan", "raw", "--out", str(mine), "--overwrite"],
                 ["convert", str(csv), str(mine), "--to", "folder", "--image-format", "png",
                  "--overwrite"]):
        assert main(argv) == 1, argv
        assert "ferclean did not write" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()  # nothing to lose: an empty folder is free
    assert _clean(csv, empty) == 0 and (empty / "manifest.json").exists()


def test_outputs_from_before_the_marker_are_recognised(csv, tmp_path):
    out = tmp_path / "a"
    assert _audit(csv, out) == 0
    (out / MARKER).unlink()  # as an older ferclean wrote it: findings.csv, summary.json
    assert _audit(csv, out, "--overwrite") == 0 and (out / MARKER).exists()
    with pytest.raises(OutputError, match="did not write"):
        check_output(out / "..", folder=True, overwrite=True, known=("findings.csv",))


def test_a_failed_overwrite_keeps_the_earlier_audit_whole(csv, tmp_path, monkeypatch,
                                                         capsys):
    out = tmp_path / "a"
    assert _audit(csv, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = pd.DataFrame.to_csv

    def to_csv_then_fail(self, path, *args, **kwargs):
        real(self, path, *args, **kwargs)  # findings.csv is written, summary.json is not
        raise RuntimeError("killed")

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv_then_fail)
    assert _audit(csv, out, "--skip", "outlier", "--overwrite") != 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _leftovers(tmp_path) == []


def test_html_inside_out_is_one_of_the_audits_files(csv, tmp_path, monkeypatch):
    import ferclean.reporting

    def write_report(ds, result, path, *, figures_dir, **kwargs):  # the page's cost spared
        Path(figures_dir).mkdir()
        Path(path).write_text("<!DOCTYPE html>", encoding="utf-8")
        return Path(path)

    monkeypatch.setattr(ferclean.reporting, "write_report", write_report)
    out = tmp_path / "a"
    assert _audit(csv, out, "--html", str(out / "report.html")) == 0
    assert {"report.html", "figures", "findings.csv"} <= {p.name for p in out.iterdir()}
    assert _audit(csv, out, "--html", str(out / "summary.json"), "--overwrite") == 1
    assert _audit(csv, out, "--html", str(out / "report.html")) == 1  # not without it
    assert (out / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_racing_audits_cannot_both_succeed(csv, tmp_path, monkeypatch, capsys):
    """The second run's final rename finds the first's output: without --overwrite it fails
    and the first's files stay whole (findings and summary of one run)."""
    out, real, state = tmp_path / "a", AuditResult.save, {"raced": False}

    def save_after_another_run(self, folder, **kwargs):
        if not state["raced"]:
            state["raced"] = True  # another run writes the same --out meanwhile
            assert main(["audit", str(csv), "--only", "class_imbalance", "--json", "--out",
                         str(out)]) == 0
        return real(self, folder, **kwargs)

    monkeypatch.setattr(AuditResult, "save", save_after_another_run)
    assert _audit(csv, out) == 1
    assert "appeared while this run was writing it" in capsys.readouterr().err
    back = read_findings(out)
    assert set(back.summary["issues"]) == {"class_imbalance"}
    assert set(back.findings.issue) <= {"class_imbalance"}
    assert _leftovers(tmp_path) == []


def test_racing_cleans_cannot_both_succeed(csv, tmp_path, monkeypatch, capsys):
    import ferclean.cleaning.outputs as outputs

    out, real, state = tmp_path / "c", outputs.write_npz, {"raced": False}

    def write_after_another_run(*args, **kwargs):
        if not state["raced"]:
            state["raced"] = True
            assert main(["clean", str(csv), "--plan", "raw", "--out", str(out)]) == 0
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs, "write_npz", write_after_another_run)
    assert _clean(csv, out) == 1
    assert "appeared while" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["plan"]["name"] == "raw"


def test_bench_results_go_only_into_a_benchmark_folder(tmp_path, small):
    from ferclean.bench import run_suite

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write"):
        run_suite(None, "smoke", mine, train_missing=False)
    fin = save(small, tmp_path / "fin.npz")
    with pytest.raises(OutputPathError, match="refusing to write"):
        run_suite(load(fin), "smoke", fin, train_missing=False)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------------- ids as paths
def test_ids_cannot_lead_the_folder_writer_outside_its_output(tmp_path, small):
    from ferclean.io.folder import copy_files, write_folder

    src = write_folder(small[:2], tmp_path / "a" / "src", image_format="png")
    names = [p.relative_to(src).as_posix() for p in sorted(src.rglob("*.png"))]
    # "../../x/<name>" read from the source reaches tmp/x/<name>, and written from the
    # temporary folder in tmp/o1/o2/ would land in tmp/o1/x/<name>
    escape = [f"../../x/{n}" for n in names]
    for n in names:
        (tmp_path / "x" / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "x" / n).write_bytes((src / n).read_bytes())
    ds = small[:2]
    hostile = FaceDataset(ds.pixels, labels=ds.labels, splits=ds.splits, ids=escape,
                          source=str(src))
    for out in (tmp_path / "o1" / "o2" / "out", tmp_path / "o1" / "o2" / "out.zip"):
        with pytest.raises(OutputPathError, match=r"image id '\.\./\.\./x/"):
            copy_files(hostile, out)
        assert not out.exists()
    assert not (tmp_path / "o1" / "x").exists()
    from ferclean.io.folder import _output_member

    for bad in ("/etc/x.png", "C:/x.png", "\\\\server\\x.png", "a/../../b.png", ".."):
        with pytest.raises(OutputPathError, match="outside the output folder"):
            _output_member(bad)
    assert _output_member("./train//happy\\Training_1.png") == "train/happy/Training_1.png"


# ---------------------------------------------------------------------- releases
def test_a_release_records_the_input_by_name_and_checksum(tmp_path, small, capsys,
                                                         monkeypatch):
    from ferclean.io.folder import read_folder

    # figures hold no path, and cost most of the time: left out here
    monkeypatch.setattr(importlib.import_module("ferclean.cleaning.publish"), "_figures",
                        lambda *args: [])

    releases = []
    for where in ("here", "there/deeper"):
        src = save(small, tmp_path / where / "fer.csv")
        assert main(["publish", str(src), "--plan", "dedup", "--out",
                     str(tmp_path / where / "rel")]) == 0
        releases.append(tmp_path / where / "rel")
    a, b = releases
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    for rel in files:  # byte-identical, wherever the input lay
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert str(tmp_path) not in (a / rel).read_bytes().decode("latin-1"), rel
    manifest = json.loads((a / "manifest.json").read_text())
    assert manifest["source"] == "fer.csv"
    assert manifest["source_sha256"] == file_digest(tmp_path / "here" / "fer.csv")
    sums = (a / "SHA256SUMS").read_text()
    assert MARKER in sums  # every file of the release is listed
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the recorded name is no input here
    assert main(["restore", str(a), "--out", "fer.csv"]) == 0
    assert load("fer.csv").equals(small)

    # from a CSV, the zip is JPEG re-encoded from the exact pixels: the release says so
    printed = capsys.readouterr().out
    zip_images = json.loads((a / "metadata.json").read_text())["data_zip"]
    assert zip_images["images"] == "jpeg" and zip_images["jpeg_quality"] == 95
    # the largest difference, measured here independently: images matched by row
    exact = load(tmp_path / "here" / "fer.csv")
    back = read_folder(a / "data" / "fer2013-dedup.zip")
    rows = [int(i.rsplit("_", 1)[1].split(".")[0]) for i in back.ids]
    largest = np.abs(back.pixels.astype(int) - exact.pixels[rows].astype(int)).max()
    assert zip_images["max_grey_level_difference"] == largest > 0
    assert (f"data/fer2013-dedup.zip holds JPEG images re-encoded from the exact pixels "
            f"(quality 95; at most {largest} grey levels off); data/fer2013-dedup.csv holds "
            "the exact pixels") in printed
    card = (a / "README.md").read_text()
    assert "`data/fer2013-dedup.csv`: cleaned data, Kaggle CSV: the exact pixels" in card
    assert f"at most {largest} grey levels off them" in card


# ---------------------------------------------------------------------- dead runs
# The package's modules without its __init__ (which imports much more): starts in a blink.
_BARE = f"""
import sys, types
package = types.ModuleType("ferclean")
package.__path__ = [{str(ROOT / "ferclean")!r}]
sys.modules["ferclean"] = package
"""
_DIE_MIDWAY = _BARE + """
import os
from ferclean._atomic import atomic_dir
with atomic_dir(sys.argv[1]) as tmp:
    (tmp / "big.bin").write_bytes(b"x" * 1000)
    os._exit(9)  # killed before the rename
"""


def test_temporary_folders_of_dead_runs_are_removed_on_the_next_run(csv, tmp_path, capsys):
    out = tmp_path / "c"
    subprocess.run([sys.executable, "-c", _DIE_MIDWAY, str(out)], check=False, cwd=ROOT)
    assert len(_leftovers(tmp_path)) == 1  # what the dead run left
    assert _clean(csv, out) == 0
    assert _leftovers(tmp_path) == []
    assert "removed 1 temporary file(s) left in" in capsys.readouterr().err


def test_an_output_a_dead_run_had_set_aside_is_moved_back(tmp_path):
    out = tmp_path / "a"
    with output_dir(out, what="example") as tmp:
        (tmp / "old.txt").write_text("old")
    script = _BARE + f"""
import os
from ferclean import _outputs
real, calls = os.rename, []
def rename(a, b):
    calls.append(a)
    if len(calls) == 2:  # the old output is set aside; die before the new one arrives
        os._exit(9)
    real(a, b)
_outputs.os.rename = rename
with _outputs.output_dir({str(out)!r}, what="example", overwrite=True) as tmp:
    (tmp / "new.txt").write_text("new")
"""
    subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT)
    assert not out.exists() and len(_leftovers(tmp_path)) == 2  # old aside, new unfinished
    assert "a" in clear_stale(tmp_path)  # the next run puts the old output back
    assert (out / "old.txt").read_text() == "old" and _leftovers(tmp_path) == []


def test_the_temporary_files_of_a_live_run_are_kept(tmp_path):
    with output_file(tmp_path / "x.csv") as tmp:
        assert clear_stale(tmp_path) == [] and tmp.exists()
        tmp.write_text("1")
    assert (tmp_path / "x.csv").read_text() == "1"


# ---------------------------------------------------------------------- one-line errors
def test_a_full_disk_is_one_line_and_leaves_nothing(csv, tmp_path, monkeypatch, capsys):
    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    assert _audit(csv, tmp_path / "a") == 1
    line = _one_error_line(capsys.readouterr().err, "audit")
    assert f"cannot write {tmp_path / 'a'}: no space left on the device" in line
    assert not (tmp_path / "a").exists() and _leftovers(tmp_path) == []


def test_a_refused_output_folder_is_one_line(csv, tmp_path, monkeypatch, capsys):
    def denied(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    assert _clean(csv, tmp_path / "c") == 1
    line = _one_error_line(capsys.readouterr().err, "clean")
    assert f"cannot write {tmp_path / 'c'}: permission denied" in line


def test_only_errors_at_the_output_become_write_errors(tmp_path):
    beside = tmp_path / "in.csv"  # an input next to the output: its error stays its own
    with pytest.raises(PermissionError), output_file(tmp_path / "out.csv"):
        raise PermissionError(errno.EACCES, "Permission denied", str(beside))
    with pytest.raises(OutputError, match="out.csv: permission denied"), output_file(
            tmp_path / "out.csv") as tmp:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line(csv, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert _audit(csv, locked / "a") == 1
        assert "permission denied" in _one_error_line(capsys.readouterr().err, "audit")
    finally:
        locked.chmod(0o700)


def test_messages_show_one_slash_after_a_folder(csv, tmp_path, capsys):
    assert _clean(csv, f"{tmp_path / 'c'}/") == 0
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'c'}/ " in printed and "//" not in printed


def test_exists_errors_are_file_exists_errors(tmp_path):
    with output_file(tmp_path / "f") as tmp:
        tmp.write_text("1")
    with pytest.raises(FileExistsError), output_file(tmp_path / "f"):
        pass
    assert issubclass(OutputExistsError, OutputError)
    with zipfile.ZipFile(tmp_path / "z.zip", "w"):
        pass
    with pytest.raises(OutputError, match="a file of that name exists"):
        check_output(tmp_path / "z.zip", folder=True, overwrite=True)
