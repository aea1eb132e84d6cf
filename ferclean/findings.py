"""The findings table: the contract every auditor returns, ``findings.csv`` holds and
:func:`read_findings` reads back.

Long form, one row per (image, issue). Format version :data:`FINDINGS_VERSION` (3):

=========== ======= ==================================================================
column      dtype   meaning
=========== ======= ==================================================================
row         int64   0-based position of the image in its input (``FaceDataset.rows``)
image_id    str     the image's stable id (``FaceDataset.ids``)
split       str     ``Training``, ``PublicTest`` or ``PrivateTest``
label       int64   emotion id 0..6, ``-1`` if unlabeled
issue       str     the issue type: an auditor's ``issue_name``
group       int64   duplicate/conflict/leak group id within the issue; ``-1`` if none
kind        str     how a group's copies match: ``exact`` (identical pixels), ``near``
                    (edited copies) or ``mirror`` (a flipped copy in the group); empty
                    for issues without groups
related_row int64   the row of the image this one is tied to (a near copy's closest
                    match, an exact copy's first image); ``-1`` if none
score       float64 severity in [0, 1]: **higher is worse** (1 = certain, e.g. an exact
                    copy); rank findings by it, descending
suggested_label
            int64   the label the evidence points to (a label issue's likely label, a
                    conflict group's majority); ``-1`` if none (no majority, or not a
                    label finding)
signal      str     what a label finding rests on: ``model`` (out-of-fold probabilities),
                    ``copies`` (the vote of the image's duplicate group) or ``ferplus``
                    (the FER+ annotators' majority); empty for other issues
probabilities
            str     the model's class probabilities for the image, seven numbers
                    separated by spaces (:func:`finding_probabilities` parses them);
                    empty where no model gave them
detail      str     a human-readable reason, for people only: code reads the columns
                    above, never this text
=========== ======= ==================================================================

Group ids are numbered 0.. in order of each group's first row, so they are deterministic.
Version 1 files (no ``kind`` and ``related_row`` columns) still read: ``kind`` is then
recovered from the old ``detail`` wording, the only place version 1 kept it. Version 2
files (no ``suggested_label``, ``signal`` and ``probabilities``) read with those empty.

This module knows the table, not the auditors: which issue names exist, and how each is
summarised, is the auditor registry's business (:mod:`ferclean.auditors`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset

#: Version of the findings format that :func:`write_findings` writes.
FINDINGS_VERSION = 3
#: ``format`` tag of ``summary.json``.
FINDINGS_FORMAT = "ferclean-findings"
FINDINGS_FILE = "findings.csv"
SUMMARY_FILE = "summary.json"
#: What an audit folder holds (``figures/`` with ``ferclean audit --html``): recognises
#: one written before the output marker.
AUDIT_FILES = (FINDINGS_FILE, SUMMARY_FILE, "figures")

COLUMNS: tuple[str, ...] = (
    "row", "image_id", "split", "label", "issue", "group", "kind", "related_row", "score",
    "suggested_label", "signal", "probabilities", "detail",
)
_V2_COLUMNS: tuple[str, ...] = (
    "row", "image_id", "split", "label", "issue", "group", "kind", "related_row", "score",
    "detail",
)
_V1_COLUMNS: tuple[str, ...] = (
    "row", "image_id", "split", "label", "issue", "group", "score", "detail",
)
_DTYPES = {
    "row": "int64", "image_id": object, "split": object, "label": "int64", "issue": object,
    "group": "int64", "kind": object, "related_row": "int64", "score": "float64",
    "suggested_label": "int64", "signal": object, "probabilities": object, "detail": object,
}
#: Values of the ``signal`` column ("" for findings that are not about a label).
SIGNALS: tuple[str, ...] = ("model", "copies", "ferplus", "")
#: Values of the ``kind`` column ("" for issues without groups).
KINDS: tuple[str, ...] = ("exact", "near", "mirror", "")


def make_findings(
    dataset: FaceDataset,
    index: Any,
    issue: str,
    *,
    score: Any = 1.0,
    group: Any = -1,
    kind: Any = "",
    related: Any = -1,
    suggested: Any = -1,
    signal: Any = "",
    probabilities: Any = None,
    detail: Any = "",
) -> pd.DataFrame:
    """Build a findings table for images ``index`` of ``dataset`` (positions, not rows).

    ``related`` holds positions too (``-1`` for none); the table stores their rows.
    ``probabilities``, when given, is an ``(len(index), n_classes)`` array (rows of NaN
    where no model gave them), stored as text with 4 decimals.

    Examples
    --------
    >>> import numpy as np
    >>> ds = FaceDataset(np.zeros((3, 48, 48), np.uint8), labels=[0, 1, 2])
    >>> f = make_findings(ds, [0, 2], "outlier", score=[0.9, 0.7], detail="flat")
    >>> f.label.tolist(), f.related_row.tolist()
    ([0, 2], [-1, -1])
    """
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    n = len(index)
    related = np.broadcast_to(np.asarray(related, dtype=np.int64), (n,))
    related_row = np.where(related >= 0, dataset.rows[np.maximum(related, 0)], -1)
    frame = pd.DataFrame(
        {
            "row": dataset.rows[index],
            "image_id": dataset.ids[index].astype(object),
            "split": np.asarray(SPLITS, dtype=object)[dataset.splits[index]],
            "label": dataset.labels[index].astype(np.int64),
            "issue": np.full(n, issue, dtype=object),
            "group": np.broadcast_to(np.asarray(group, dtype=np.int64), (n,)),
            "kind": np.broadcast_to(np.asarray(kind, dtype=object), (n,)),
            "related_row": related_row.astype(np.int64),
            "score": np.broadcast_to(np.asarray(score, dtype=np.float64), (n,)),
            "suggested_label": np.broadcast_to(np.asarray(suggested, dtype=np.int64), (n,)),
            "signal": np.broadcast_to(np.asarray(signal, dtype=object), (n,)),
            "probabilities": _format_probabilities(probabilities, n),
            "detail": np.broadcast_to(np.asarray(detail, dtype=object), (n,)),
        }
    )
    return validate_findings(frame)


def _format_probabilities(probabilities: Any, n: int) -> np.ndarray:
    if probabilities is None:
        return np.full(n, "", dtype=object)
    probs = np.asarray(probabilities, dtype=np.float64).reshape(n, -1)
    text = np.full(n, "", dtype=object)
    for i in np.flatnonzero(np.isfinite(probs).all(axis=1)):  # one short string per finding
        text[i] = " ".join(f"{p:.4f}" for p in probs[i])
    return text


def finding_probabilities(findings: pd.DataFrame, n_classes: int = len(EMOTIONS)) -> np.ndarray:
    """The ``probabilities`` column as an ``(n, n_classes)`` array, NaN where empty.

    Examples
    --------
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[0, 1])
    >>> p = np.array([[0.9, 0.1], [np.nan, np.nan]])
    >>> f = make_findings(ds, [0, 1], "label_issue", signal="model", probabilities=p)
    >>> finding_probabilities(f, 2).tolist()[0]
    [0.9, 0.1]
    """
    out = np.full((len(findings), n_classes), np.nan)
    for i, text in enumerate(findings["probabilities"].to_numpy()):
        if text:
            values = np.array(text.split(), dtype=np.float64)
            out[i, : len(values)] = values
    return out


def empty_findings() -> pd.DataFrame:
    """An empty findings table with the contract's columns and dtypes.

    Examples
    --------
    >>> list(empty_findings().columns) == list(COLUMNS)
    True
    """
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in COLUMNS})


def validate_findings(frame: pd.DataFrame, issues: Iterable[str] | None = None) -> pd.DataFrame:
    """Check columns, dtypes, kinds and score range; return the table in column order.

    ``issues``, when given, are the issue names allowed.

    Examples
    --------
    >>> validate_findings(empty_findings()).shape
    (0, 13)
    >>> validate_findings(empty_findings().drop(columns="kind"))
    Traceback (most recent call last):
    ...
    ValueError: findings table is missing column(s): kind
    """
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"findings table is missing column(s): {', '.join(missing)}")
    frame = frame.loc[:, list(COLUMNS)].astype(_DTYPES)
    if len(frame):
        if issues is not None:
            bad = ~frame["issue"].isin(list(issues))
            if bad.any():
                raise ValueError(f"unknown issue type(s): {sorted(set(frame['issue'][bad]))}")
        bad_signal = ~frame["signal"].isin(SIGNALS)
        if bad_signal.any():
            raise ValueError(f"unknown signal(s) {sorted(set(frame['signal'][bad_signal]))}; "
                             f"expected one of {', '.join(repr(k) for k in SIGNALS)}")
        bad_kind = ~frame["kind"].isin(KINDS)
        if bad_kind.any():
            raise ValueError(f"unknown kind(s) {sorted(set(frame['kind'][bad_kind]))}; "
                             f"expected one of {', '.join(repr(k) for k in KINDS)}")
        score = frame["score"].to_numpy()
        if np.any(~np.isfinite(score)) or score.min() < 0 or score.max() > 1:
            raise ValueError("finding scores must lie in [0, 1]")
    return frame.reset_index(drop=True)


def concat_findings(tables: Iterable[pd.DataFrame],
                    order: Sequence[str] | None = None) -> pd.DataFrame:
    """Stack auditor outputs into one report, sorted by issue (in ``order``), group, row.

    Examples
    --------
    >>> concat_findings([empty_findings(), empty_findings()]).shape
    (0, 13)
    """
    tables = [t for t in tables if len(t)]
    if not tables:
        return empty_findings()
    frame = pd.concat(tables, ignore_index=True)
    names = list(order) if order is not None else list(dict.fromkeys(frame["issue"]))
    rank = {name: i for i, name in enumerate(names)}
    frame = frame.assign(_issue=frame["issue"].map(rank).fillna(len(rank)))
    frame = frame.sort_values(["_issue", "group", "row"], kind="stable").drop(columns="_issue")
    return validate_findings(frame)


def group_counts(part: pd.DataFrame) -> dict[str, int]:
    """Groups, images in them, and images beyond the first of each group.

    Examples
    --------
    >>> import numpy as np
    >>> ds = FaceDataset(np.zeros((3, 48, 48), np.uint8))
    >>> group_counts(make_findings(ds, [0, 1, 2], "exact_duplicate", group=0))
    {'groups': 1, 'images': 3, 'removable': 2}
    """
    n_groups = int(part["group"].nunique())
    n_images = int(part["row"].nunique())
    return {"groups": n_groups, "images": n_images, "removable": n_images - n_groups}


def dataset_summary(dataset: FaceDataset) -> dict[str, Any]:
    """The dataset part of ``summary.json``: image count, split and label counts.

    Examples
    --------
    >>> import numpy as np
    >>> dataset_summary(FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=[0, 0]))["n_images"]
    2
    """
    return {
        "n_images": len(dataset),
        "splits": dataset.split_counts(),
        "labels": {name: int((dataset.labels == i).sum()) for i, name in enumerate(EMOTIONS)},
    }


# ---------------------------------------------------------------------- files
def write_findings(findings: pd.DataFrame, summary: dict[str, Any],
                   out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``findings.csv`` and ``summary.json`` into folder ``out``, together.

    ``summary.json`` records the format and its version, which :func:`read_findings`
    checks. Both files are written into a temporary folder that replaces ``out`` as a
    unit, so the files of two audits never mix. ``out`` is never the audited dataset
    (``summary["source"]``) nor inside it; an existing ``out`` is replaced only with
    ``overwrite=True``, and only if ferclean wrote it (:mod:`ferclean._outputs`).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8))
    >>> f = make_findings(ds, [0, 1], "exact_duplicate", group=0, kind="exact")
    >>> out = write_findings(f, {"issues": {}}, pathlib.Path(tempfile.mkdtemp()) / "audit")
    >>> sorted(p.name for p in out.iterdir())  # .ferclean-output: ferclean wrote it
    ['.ferclean-output', 'findings.csv', 'summary.json']
    """
    from ferclean._json import dumps
    from ferclean._outputs import output_dir, source_inputs

    out = Path(out)
    summary = {"format": FINDINGS_FORMAT, "version": FINDINGS_VERSION,
               **{k: v for k, v in summary.items() if k not in ("format", "version")}}
    source = summary.get("source")
    with output_dir(out, what="ferclean audit", overwrite=overwrite, known=AUDIT_FILES,
                    inputs=source_inputs(source)) as tmp:
        validate_findings(findings).to_csv(tmp / FINDINGS_FILE, index=False)
        (tmp / SUMMARY_FILE).write_text(dumps(summary))
    return out


def read_findings(path: str | os.PathLike) -> AuditResult:
    """Read an audit folder (or its ``findings.csv``) back as an :class:`AuditResult`.

    The schema and version are checked; version 1 files (written before the ``kind`` and
    ``related_row`` columns) are upgraded on reading.

    Raises
    ------
    ValueError
        Naming the file, when it is not a ferclean findings file, is of an unknown
        version, or lacks columns.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> ds = FaceDataset(np.zeros((2, 48, 48), np.uint8))
    >>> f = make_findings(ds, [0, 1], "exact_duplicate", group=0, kind="exact")
    >>> out = write_findings(f, {"issues": {}}, pathlib.Path(tempfile.mkdtemp()))
    >>> back = read_findings(out)
    >>> back.findings.equals(f), back.summary["version"]
    (True, 3)
    """
    path = Path(path)
    folder = path.parent if path.name == FINDINGS_FILE else path
    csv_path, summary_path = folder / FINDINGS_FILE, folder / SUMMARY_FILE
    for p in (csv_path, summary_path):
        if not p.is_file():
            raise ValueError(f"{p}: no such file; pass the folder `ferclean audit --out` "
                             f"wrote (it holds {FINDINGS_FILE} and {SUMMARY_FILE})")
    try:
        summary = json.loads(summary_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{summary_path}: not valid JSON: {exc}") from None
    if not isinstance(summary, dict) or "issues" not in summary:
        raise ValueError(f"{summary_path}: not a ferclean audit summary (no 'issues')")
    version = summary.get("version", 1)
    if summary.get("format", FINDINGS_FORMAT) != FINDINGS_FORMAT or version not in (1, 2, 3):
        raise ValueError(f"{summary_path}: format {summary.get('format')!r} version "
                         f"{version!r} is not one this ferclean reads ({FINDINGS_FORMAT} "
                         f"1 to {FINDINGS_VERSION})")
    try:
        frame = pd.read_csv(csv_path, dtype={"image_id": str, "split": str, "issue": str,
                                             "kind": str, "detail": str, "signal": str,
                                             "probabilities": str},
                            keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{csv_path}: not a readable findings table: {exc}") from None
    expected = {1: _V1_COLUMNS, 2: _V2_COLUMNS, 3: COLUMNS}[version]
    summary = {**summary, "format": FINDINGS_FORMAT, "version": FINDINGS_VERSION}
    if frame.empty and not len(frame.columns):
        return AuditResult(empty_findings(), summary)
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing column(s) {', '.join(missing)} of findings "
                         f"version {version}")
    if version == 1:
        frame = _upgrade_v1(frame)
    if version < 3:  # no label columns yet: nothing suggested
        frame = frame.assign(suggested_label=-1, signal="", probabilities="")
    try:
        frame = validate_findings(frame)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{csv_path}: {exc}") from None
    return AuditResult(frame, summary)


def _upgrade_v1(frame: pd.DataFrame) -> pd.DataFrame:
    """Version 1 kept a group's kind only in ``detail``'s wording; read it from there."""
    detail = frame["detail"].astype(str)
    grouped = frame["group"].to_numpy() >= 0
    near = detail.str.startswith("near duplicate group") | (frame["issue"] == "near_duplicate")
    kind = np.where(~grouped, "", np.where(near, "near", "exact"))
    return frame.assign(kind=kind.astype(object), related_row=-1)


def summary_table(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per issue: groups, images and removable, exact and near side by side.

    ``near_groups``/``near_images`` are filled for issues that count near-duplicate groups
    apart (label conflicts and leaks over near copies), and empty elsewhere.

    Examples
    --------
    >>> summary_table({"issues": {"outlier": {"groups": 0, "images": 3}}}).images.tolist()
    [3]
    """
    columns = ["issue", "groups", "images", "removable", "near_groups", "near_images"]
    rows = [{"issue": k, "groups": v.get("groups", 0), "images": v.get("images", 0),
             "removable": v.get("removable", ""), "near_groups": v.get("near_groups", ""),
             "near_images": v.get("near_images", "")}
            for k, v in summary["issues"].items()]
    return pd.DataFrame(rows, columns=columns)


@dataclass
class AuditResult:
    """What an audit returns, and what :func:`read_findings` reads back.

    Attributes
    ----------
    findings : DataFrame
        The findings table (see the module docs).
    summary : dict
        What ``summary.json`` holds: dataset counts, per-issue counts, the settings used.
    auditors : list of Auditor
        The fitted auditors (empty when read back from files).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.auditors import audit
    >>> result = audit(demo_dataset(n_faces=300), only=["exact_duplicate"])
    >>> list(result.table().columns)[:4]
    ['issue', 'groups', 'images', 'removable']
    >>> set(result.of("exact_duplicate")["issue"])
    {'exact_duplicate'}
    """

    findings: pd.DataFrame
    summary: dict[str, Any]
    auditors: list[Any] = field(default_factory=list)

    @property
    def issues(self) -> list[str]:
        """The issue types this audit examined (found or not), in audit order."""
        return list(self.summary.get("issues", {}))

    def table(self) -> pd.DataFrame:
        """The short summary table (see :func:`summary_table`)."""
        return summary_table(self.summary)

    def of(self, issue: str) -> pd.DataFrame:
        """The findings of one issue type."""
        return self.findings[self.findings["issue"] == issue].reset_index(drop=True)

    def save(self, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write ``findings.csv`` and ``summary.json`` into folder ``out`` (see
        :func:`write_findings`; ``overwrite=True`` replaces an earlier audit there).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ferclean.demo import demo_dataset
        >>> from ferclean.auditors import audit
        >>> result = audit(demo_dataset(n_faces=300), only=["exact_duplicate"])
        >>> out = result.save(pathlib.Path(tempfile.mkdtemp()) / "audit")
        >>> read_findings(out).findings.equals(result.findings)
        True
        """
        return write_findings(self.findings, self.summary, out, overwrite=overwrite)
