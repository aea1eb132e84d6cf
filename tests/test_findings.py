"""The findings contract as files: written, read back, version checked, version 1 upgraded."""

from __future__ import annotations

import json

import pytest

import ferclean
from ferclean.findings import COLUMNS, FINDINGS_VERSION, read_findings


@pytest.fixture(scope="module")
def audited(small_demo):
    params = {"label_conflict": {"duplicates": "all"}, "cross_split_leak": {"duplicates": "all"}}
    return ferclean.audit(small_demo.dataset, params=params)


def test_round_trip_keeps_every_column_and_the_summary(tmp_path, audited):
    back = read_findings(audited.save(tmp_path / "a"))
    assert back.findings.equals(audited.findings)
    assert back.summary["version"] == FINDINGS_VERSION
    assert back.issues == audited.issues
    assert read_findings(tmp_path / "a" / "findings.csv").findings.equals(audited.findings)


def test_version_1_files_still_read(tmp_path, audited):
    """Version 1 had no kind/related_row columns and kept exact-vs-near only in detail."""
    out = audited.save(tmp_path / "v1")
    audited.findings.drop(columns=["kind", "related_row"]).to_csv(out / "findings.csv",
                                                                  index=False)
    summary = {k: v for k, v in audited.summary.items() if k not in ("format", "version")}
    (out / "summary.json").write_text(json.dumps(summary))
    back = read_findings(out)
    assert list(back.findings.columns) == list(COLUMNS)
    assert (back.findings.kind == audited.findings.kind.replace("mirror", "near")).all()
    assert (back.findings.related_row == -1).all()


@pytest.mark.parametrize("summary, message", [
    ({"format": "ferclean-findings", "version": 4, "issues": {}}, "version 4"),
    ({"format": "something-else", "version": 2, "issues": {}}, "something-else"),
    ({"n_images": 3}, "not a ferclean audit summary"),
])
def test_wrong_or_newer_files_are_refused_by_name(tmp_path, audited, summary, message):
    out = audited.save(tmp_path / "bad")
    (out / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match=message) as info:
        read_findings(out)
    assert "summary.json" in str(info.value)


def test_missing_columns_and_missing_files_name_the_file(tmp_path, audited):
    out = audited.save(tmp_path / "cols")
    audited.findings.drop(columns=["group"]).to_csv(out / "findings.csv", index=False)
    with pytest.raises(ValueError, match="findings.csv: missing column"):
        read_findings(out)
    with pytest.raises(ValueError, match="no such file"):
        read_findings(tmp_path / "nowhere")
