"""The command line, through main([...])."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ferclean.cli import main
from ferclean.demo import make_demo
from ferclean.findings import COLUMNS
from ferclean.io import load, save


def test_audit_demo_writes_findings_and_summary(tmp_path, capsys):
    out = tmp_path / "audit"
    assert main(["audit", "--demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exact_duplicate" in printed and "cross_split_leak" in printed
    findings = pd.read_csv(out / "findings.csv")
    assert list(findings.columns) == list(COLUMNS)
    summary = json.loads((out / "summary.json").read_text())
    truth = make_demo().truth
    assert summary["issues"]["exact_duplicate"]["groups"] == len(truth.exact_groups())
    assert summary["n_images"] == len(make_demo().dataset)


def test_audit_without_path_uses_demo_and_json(tmp_path, capsys):
    assert main(["audit", "--out", str(tmp_path / "a"), "--json",
                 "--only", "exact_duplicate,label_conflict"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["issues"]) == {"exact_duplicate", "label_conflict"}


def test_audit_a_csv_and_skip(tmp_path, capsys):
    csv = save(make_demo(n_faces=300).dataset, tmp_path / "demo.csv")
    assert main(["audit", str(csv), "--out", str(tmp_path / "a"),
                 "--skip", "class_imbalance"]) == 0
    findings = pd.read_csv(tmp_path / "a" / "findings.csv")
    assert "class_imbalance" not in set(findings.issue)


def test_audit_unknown_auditor_is_an_error(tmp_path, capsys):
    assert main(["audit", "--demo", "--out", str(tmp_path), "--only", "blur"]) == 1
    assert "unknown auditor 'blur'" in capsys.readouterr().err


def test_audit_refuses_to_write_into_its_input(tmp_path, capsys):
    folder = tmp_path / "data"
    save(make_demo(n_faces=300).dataset, folder, image_format="png")
    assert main(["audit", str(folder), "--out", str(folder / "audit")]) == 1
    assert "refusing to write" in capsys.readouterr().err


def test_bad_input_names_file_and_row(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    assert main(["audit", str(bad), "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "bad.csv: row 0 (line 2): expected 2304 pixel values, found 3" in err
    # skipping the only row leaves an empty dataset: audited, and the skip is reported
    assert main(["audit", str(bad), "--on-bad", "skip", "--out", str(tmp_path / "b")]) == 0
    assert "skipped 1 bad record" in capsys.readouterr().err


def test_skip_reports_dropped_rows(tmp_path, capsys):
    ds = make_demo(n_faces=300).dataset
    csv = save(ds, tmp_path / "d.csv")
    lines = csv.read_text().splitlines()
    lines[5] = "9" + lines[5][1:]
    csv.write_text("\n".join(lines) + "\n")
    assert main(["audit", str(csv), "--on-bad", "report", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 bad record" in err and "row 4 (line 6)" in err


@pytest.mark.parametrize("dst", ["out.csv", "out.npz", "out_png", "out.zip"])
def test_convert_and_demo_round_trip(tmp_path, dst):
    src = tmp_path / "demo.npz"
    assert main(["demo", "--out", str(src), "--n-faces", "300"]) == 0
    args = ["convert", str(src), str(tmp_path / dst)]
    if not dst.endswith((".csv", ".npz")):
        args += ["--image-format", "png"]
    assert main(args) == 0
    back = load(tmp_path / dst)
    original = load(src)
    order = back.rows if dst.endswith((".csv", ".npz")) else None
    if order is None:  # folder forms are sorted by path: match images by file name
        order = [int(i.rsplit("_", 1)[1].split(".")[0]) for i in back.ids]
    assert back.equals(original[list(order)])


def test_convert_refuses_its_own_input(tmp_path, capsys):
    src = save(make_demo(n_faces=300).dataset, tmp_path / "d.csv")
    assert main(["convert", str(src), str(src), "--overwrite"]) == 1
    assert "refusing to write" in capsys.readouterr().err


def test_demo_truth_file(tmp_path):
    assert main(["demo", "--out", str(tmp_path / "d.csv"), "--truth",
                 str(tmp_path / "truth.json"), "--n-faces", "300"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["groups"] and truth["non_faces"]


def test_help_for_every_command(capsys):
    for command in ["audit", "clean", "restore", "publish", "bench", "convert", "demo"]:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    assert main([]) == 2


def test_clean_restore_publish(tmp_path, capsys):
    src = save(make_demo(n_faces=300).dataset, tmp_path / "demo.csv")
    out = tmp_path / "clean"
    assert main(["clean", str(src), "--plan", "dedup", "--out", str(out),
                 "--write-plan", str(tmp_path / "plan.json")]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".ferclean-output", "cleaned.csv",
                                                     "manifest.json", "removed.npz"]
    assert json.loads((tmp_path / "plan.json").read_text())["name"] == "dedup"
    assert main(["restore", str(out), "--out", str(tmp_path / "back.csv")]) == 0
    assert load(tmp_path / "back.csv").equals(load(src))
    # a plan file works like a preset; an existing output is refused
    assert main(["clean", str(src), "--plan", str(tmp_path / "plan.json"), "--out",
                 str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["publish", str(src), "--plan", "raw", "--out", str(tmp_path / "rel")]) == 0
    assert (tmp_path / "rel" / "SHA256SUMS").exists()
    assert main(["clean", str(src), "--plan", "nope", "--out", str(tmp_path / "x")]) == 1
    assert "neither a preset" in capsys.readouterr().err


def test_train_then_evaluate(tmp_path, capsys):
    pytest.importorskip("jax")
    pytest.importorskip("flax")
    pytest.importorskip("optax")
    data = save(make_demo(n_faces=300).dataset, tmp_path / "demo.npz")
    ckpt = tmp_path / "ckpt"
    assert main(["train", str(data), "--out", str(ckpt), "--epochs", "1", "--batch-size",
                 "32", "--model-arg", "bn_momentum=0.9"]) == 0
    assert (ckpt / "history.json").exists()
    assert main(["evaluate", str(data), "--checkpoint", str(ckpt), "--out",
                 str(tmp_path / "eval"), "--json"]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads(printed[printed.index("{"):])
    assert 0 <= metrics["accuracy"] <= 1
    assert (tmp_path / "eval" / "metrics.json").exists()


def test_audit_html_report(tmp_path):
    html = tmp_path / "report.html"
    assert main(["audit", "--demo", "--out", str(tmp_path / "a"), "--html", str(html)]) == 0
    text = html.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "data:image/png;base64," in text
    assert "https://" not in text and "http://" not in text
    assert sorted(p.name for p in (tmp_path / "a" / "figures").iterdir())


def test_audit_counts_near_copies_by_default_and_exact_only_on_request(tmp_path, capsys):
    def summary(*extra):
        # one --out for every run: each replaces the earlier audit there
        assert main(["audit", "--demo", "--out", str(tmp_path / "a"), "--overwrite", "--json",
                     "--only", "near_duplicate,label_conflict,cross_split_leak",
                     *extra]) == 0
        return json.loads(capsys.readouterr().out)

    truth = make_demo().truth
    default, exact_only, mirror = summary(), summary("--exact-only"), summary("--mirror")
    for name, groups in (("label_conflict", truth.conflict_groups("exact")),
                         ("cross_split_leak", truth.leak_groups("exact"))):
        assert default["issues"][name]["groups"] == len(groups)  # exact figures unchanged
        assert default["issues"][name]["near_groups"] > 0
        assert exact_only["issues"][name]["groups"] == len(groups)
        assert "near_groups" not in exact_only["issues"][name]
    assert default["issues"]["near_duplicate"]["mirror_pairs"] == 0
    assert mirror["issues"]["near_duplicate"]["mirror_pairs"] > 0
    assert mirror["issues"]["cross_split_leak"]["near_groups"] > default["issues"][
        "cross_split_leak"]["near_groups"]  # mirrored copies of test images leak too
    assert main(["audit", "--demo", "--out", str(tmp_path / "b"), "--only",
                 "label_conflict"]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.strip().startswith("issue"))
    assert "near_groups" in header  # exact and near side by side


@pytest.mark.parametrize("shard", ["2/2", "x/3", "1"])
def test_bench_shard_must_read_i_of_n(shard, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--demo", "--profile", "smoke", "--shard", shard])
    assert exit_info.value.code == 2
    assert "--shard" in capsys.readouterr().err


def test_bench_workers_and_shard_exclude_each_other(tmp_path):
    pytest.importorskip("jax")
    with pytest.raises(SystemExit, match="not both"):
        main(["bench", "--demo", "--profile", "smoke", "--out", str(tmp_path),
              "--workers", "2", "--shard", "0/2"])
    with pytest.raises(SystemExit, match="--workers must be >= 1"):
        main(["bench", "--demo", "--profile", "smoke", "--out", str(tmp_path),
              "--workers", "0"])


def test_audit_near_radius_and_similarity_reach_the_auditor(tmp_path, capsys):
    def near_groups(*extra):
        assert main(["audit", "--demo", "--out", str(tmp_path / "a"), "--overwrite", "--json",
                     "--only", "near_duplicate", *extra]) == 0
        return json.loads(capsys.readouterr().out)["issues"]["near_duplicate"]["groups"]

    default = near_groups()
    assert near_groups("--near-radius", "2") < default
    assert near_groups("--near-similarity", "0.999") < default
    assert main(["audit", "--demo", "--out", str(tmp_path / "b"), "--near-radius", "99"]) == 1
    err = capsys.readouterr().err
    assert "radius" in err and "99" in err and "64" in err  # what was given, what is allowed


def test_near_settings_reach_conflicts_whatever_only_says(tmp_path, capsys):
    """--near-similarity changes the near groups label_conflict examines, reported or not."""
    def near_conflicts(*only):
        assert main(["audit", "--demo", "--out", str(tmp_path / "a"), "--overwrite", "--json",
                     "--near-similarity", "0.999", "--only",
                     ",".join(["label_conflict", *only])]) == 0
        return json.loads(capsys.readouterr().out)["issues"]["label_conflict"]["near_groups"]

    alone, with_near = near_conflicts(), near_conflicts("near_duplicate")
    assert alone == with_near
    assert main(["audit", "--demo", "--out", str(tmp_path / "b"), "--json",
                 "--only", "label_conflict"]) == 0
    default = json.loads(capsys.readouterr().out)["issues"]["label_conflict"]["near_groups"]
    assert alone < default


def test_clean_and_publish_read_findings_back(tmp_path, capsys):
    audit_dir = tmp_path / "audit"
    assert main(["audit", "--demo", "--out", str(audit_dir), "--near-similarity", "0.99",
                 "--mirror"]) == 0
    for how, extra in (("files", ["--findings", str(audit_dir)]),
                       ("audit", ["--near-similarity", "0.99"])):
        assert main(["clean", "--demo", "--plan", "strict", "--out",
                     str(tmp_path / f"clean-{how}"), *extra]) == 0
    removed = [json.loads((tmp_path / f"clean-{how}" / "manifest.json").read_text())["removed"]
               for how in ("files", "audit")]
    assert removed[0] == removed[1] and removed[0]
    assert main(["publish", "--demo", "--plan", "seed-final", "--findings", str(audit_dir),
                 "--out", str(tmp_path / "release")]) == 0
    capsys.readouterr()
    (audit_dir / "summary.json").write_text('{"format": "ferclean-findings", "version": 9, '
                                            '"issues": {}}')
    assert main(["clean", "--demo", "--findings", str(audit_dir), "--out",
                 str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert "summary.json" in err and "version 9" in err


def test_strict_refuses_findings_without_mirrored_copies(tmp_path, capsys):
    audit_dir = tmp_path / "audit"
    assert main(["audit", "--demo", "--out", str(audit_dir)]) == 0  # no --mirror
    capsys.readouterr()
    assert main(["clean", "--demo", "--plan", "strict", "--findings", str(audit_dir),
                 "--out", str(tmp_path / "clean")]) == 1
    err = capsys.readouterr().err
    assert "needs findings audited with --mirror" in err and not (tmp_path / "clean").exists()
    assert "near_duplicate.mirror=True" not in err  # the CLI's flag, not the library's keyword
    assert main(["clean", "--demo", "--plan", "seed-final", "--findings", str(audit_dir),
                 "--out", str(tmp_path / "seed")]) == 0  # the study's presets need no mirror


# ---------------------------------------------------------------------- as a person reads it
def _options():
    """Every argument of every sub-command: (command, action)."""
    import argparse

    from ferclean.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                yield name, action


def test_every_option_has_help_with_its_default():
    """Each flag says what it does; a flag with a default value says which."""
    import argparse

    assert len(list(_options())) > 60
    missing, no_default = [], []
    for command, action in _options():
        flag = f"{command} {'/'.join(action.option_strings) or action.dest}"
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(flag)
            continue
        text = action.help % {"default": action.default, "prog": "ferclean",
                              "choices": action.choices}
        flags_off = isinstance(action, (argparse._StoreTrueAction, argparse._AppendAction))
        if action.default not in (None, False, argparse.SUPPRESS) and not flags_off and not (
                "default" in text.lower() and str(action.default) in text):
            no_default.append(f"{flag} (default {action.default!r}): {text}")
    assert not missing, "options without help: " + ", ".join(missing)
    assert not no_default, "help that does not show the default:\n" + "\n".join(no_default)


def test_audit_says_what_it_audited_and_what_next(tmp_path, capsys, monkeypatch):
    csv = save(make_demo(n_faces=300).dataset, tmp_path / "demo.csv")
    assert main(["audit", str(csv), "--out", str(tmp_path / "a")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"audited {csv}: 410 images (Training 325, PublicTest 42, " \
                       "PrivateTest 43)"
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())["issues"]
    rows = {line.split()[0]: line for line in lines if line.strip()}
    # the issues without groups say what their image count means, not "0" groups
    assert rows["outlier"].split()[1:3] == ["-", str(summary["outlier"]["images"])]
    assert "face-model score > 0.5: likely not faces" in rows["outlier"]
    assert rows["class_imbalance"].split()[1:3] == [
        "-", str(summary["class_imbalance"]["images"])]
    assert "classes under 0.5x the mean of their split: disgust (" in rows["class_imbalance"]
    exact = summary["exact_duplicate"]
    assert rows["exact_duplicate"].split()[1:4] == [
        str(exact[k]) for k in ("groups", "images", "removable")]
    hints = lines[lines.index("next:"):]
    assert any(f"ferclean audit {csv} --html report.html" in h for h in hints)
    assert any(f"ferclean clean {csv} --plan strict --out CLEANED" in h for h in hints)
    table = lines[2:lines.index("", 2)]
    assert table[0].split()[0] == "issue" and all(len(line) <= 100 for line in table)
    # an audit strict can use is offered for reuse with --findings; on a terminal, every
    # step that takes long on FER-2013 shows its progress
    from ferclean import cli

    monkeypatch.setattr(cli, "_interactive", lambda: True)
    assert main(["audit", str(csv), "--mirror", "--out", str(tmp_path / "m"), "--html",
                 str(tmp_path / "r.html")]) == 0
    out, err = capsys.readouterr()
    hints = out.split("next:")[1]
    assert f"--findings {tmp_path / 'm'}/ --plan strict" in hints and "--html" not in hints
    n_auditors = len(json.loads((tmp_path / "m" / "summary.json").read_text())["issues"])
    for step in ("reading CSV", "audit exact_duplicate", "audit near_duplicate",
                 "audit outlier", f"] {n_auditors}/{n_auditors}", "report: galleries",
                 "report: figures",
                 "report: page: [########################] 3/3"):
        assert step in err, step
    assert main(["clean", str(csv), "--findings", str(tmp_path / "m"), "--out",
                 str(tmp_path / "c")]) == 0
    assert f"write {tmp_path / 'c'}/: " in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "c"), "--out", str(tmp_path / "back.csv")]) == 0
    err = capsys.readouterr().err
    assert f"read {tmp_path / 'c'}/: " in err and "write back.csv: [" in err and "410/410" in err


def test_clean_summary_fits_100_columns_with_a_legend(tmp_path, capsys):
    assert main(["clean", "--demo", "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    table = lines[:next(i for i, line in enumerate(lines) if line.startswith("kept "))]
    assert all(len(line) <= 100 for line in table), max(table, key=len)
    assert lines[0].split() == ["removed", "split", "because", "(rules", "below)"]
    body = lines[1:lines.index("")]
    counts = [int(line.split()[0]) for line in body]
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert sum(counts) == len(manifest["removed"]) and counts == sorted(counts, reverse=True)
    assert any(line.split()[2:] == ["cross_split_leak", "+", "exact_duplicate"]
               for line in body)
    legend = lines[lines.index("the rules of plan strict:") + 1:]
    assert legend[0].split()[0] == "exact_duplicate"
    assert "keep one per group (prefer_test), drop the rest from Training" in legend[0]


# ---------------------------------------------------------------------- no tracebacks
def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"ferclean {command}: error")]
    assert len(lines) == 1, err
    return lines[0]


def test_train_unknown_model_arg_is_one_line(tmp_path, capsys):
    pytest.importorskip("jax")
    pytest.importorskip("flax")
    pytest.importorskip("optax")
    data = tmp_path / "none.npz"  # never read: the option is checked first
    for arg, says in (("foo=1", "cnn_lstm has no option 'foo'; its options: num_classes"),
                      ("foo", "expected KEY=JSON"),
                      ("bn_momentum=x", "the value must be JSON")):
        assert main(["train", str(data), "--out", str(tmp_path / "run"),
                     "--model-arg", arg]) == 1
        assert says in _one_line_error(capsys, "train"), arg
    assert not (tmp_path / "run").exists()


def test_restore_a_file_is_one_line(tmp_path, capsys):
    src = save(make_demo(n_faces=300).dataset, tmp_path / "d.npz")
    assert main(["restore", str(src), "--out", str(tmp_path / "back.npz")]) == 1
    line = _one_line_error(capsys, "restore")
    assert f"{src} is a file" in line and "manifest.json" in line


def test_errors_and_warnings_name_cli_flags(tmp_path, capsys):
    src = save(make_demo(n_faces=300).dataset, tmp_path / "d.npz")
    (tmp_path / "taken.csv").write_text("x")
    assert main(["convert", str(src), str(tmp_path / "taken.csv")]) == 1
    line = _one_line_error(capsys, "convert")
    assert "--overwrite" in line and "overwrite=True" not in line
    odd = tmp_path / "data.dat"
    odd.write_bytes(b"?")
    assert main(["audit", str(odd), "--out", str(tmp_path / "a")]) == 1
    line = _one_line_error(capsys, "audit")
    assert "--input-format" in line and "format=" not in line
    assert main(["convert", str(odd), str(tmp_path / "x.npz")]) == 1
    assert "--from" in _one_line_error(capsys, "convert")
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n0,1 2 3,Training\n")
    assert main(["audit", str(bad), "--out", str(tmp_path / "b")]) == 1
    line = _one_line_error(capsys, "audit")
    assert "--on-bad skip" in line and "on_bad" not in line
    # a warning is one line in CLI terms too (in a process of its own: pytest records
    # warnings instead of printing them)
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ferclean", "convert", str(src),
                           str(tmp_path / "out.zip")], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    assert err.startswith("ferclean convert: warning: writing JPEG images") and err.count(
        "\n") == 1, err
    assert "--image-format png" in err and "image_format" not in err and ".py:" not in err


def test_os_errors_and_bugs_are_one_line(tmp_path, capsys, monkeypatch):
    from ferclean import cli

    def denied(self, args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "locked"))

    monkeypatch.setattr(cli.DemoCommand, "run", denied)
    assert main(["demo", "--out", str(tmp_path / "d.npz")]) == 1
    assert _one_line_error(capsys, "demo").endswith(f"{tmp_path / 'locked'}: permission denied")

    def bug(self, args):
        raise TypeError("unsupported operand\nspanning lines")

    monkeypatch.setattr(cli.DemoCommand, "run", bug)
    assert main(["demo", "--out", str(tmp_path / "d.npz")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert "internal error: TypeError: unsupported operand spanning lines" in err
    monkeypatch.setenv("FERCLEAN_TRACEBACK", "1")
    with pytest.raises(TypeError):
        main(["demo", "--out", str(tmp_path / "d.npz")])

