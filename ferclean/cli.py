"""The ``ferclean`` command line: argument parsing only.

Each sub-command is a small class with ``register(subparsers)`` and ``run(args)``; ``run``
calls one library function, writes its output and returns the exit code. Test it with
``main([...])``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ferclean._version import __version__
from ferclean.errors import ON_BAD_CHOICES, FercleanError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


_OVERWRITE_HELP = ("replace {what} if it exists: a file, or a folder an earlier ferclean run "
                   "wrote (never a folder of other files); default: refuse")
_ON_BAD_HELP = ("bad rows or images: raise stops at the first, naming it (default raise); "
                "skip and report drop them and list the first ten; report also warns with a "
                "summary")


def _add_input(parser: argparse.ArgumentParser, *, demo: bool = True,
               seed_help: str = "seed of the demo data (default %(default)s)") -> None:
    parser.add_argument(
        "path", nargs="?", help="dataset: Kaggle CSV, image folder, .zip or ferclean .npz "
        "(default: the built-in demo data)"
    )
    parser.add_argument("--input-format", dest="format",
                        choices=("csv", "folder", "zip", "npz", "parquet"),
                        help="force the input form instead of guessing it from PATH (default: "
                        "from the extension; a folder is an image folder)")
    parser.add_argument("--on-bad", choices=ON_BAD_CHOICES, default="raise", help=_ON_BAD_HELP)
    if demo:
        parser.add_argument("--demo", action="store_true",
                            help="use the built-in demo data (the default when PATH is omitted)")
        parser.add_argument("--seed", type=int, default=0, help=seed_help)


def _load_input(args: argparse.Namespace):  # -> FaceDataset
    from ferclean.io import load

    if getattr(args, "demo", False) or args.path is None:
        if args.path is not None:
            raise SystemExit("give either PATH or --demo, not both")
        from ferclean.demo import demo_dataset

        return demo_dataset(seed=getattr(args, "seed", 0))
    ds = load(args.path, format=args.format, on_bad=args.on_bad, progress=_interactive())
    if len(ds.dropped):
        print(f"skipped {len(ds.dropped)} bad record(s) of {args.path}:", file=sys.stderr)
        for rec in ds.dropped.head(10).itertuples():
            print(f"  {rec.location}: {rec.reason}", file=sys.stderr)
    return ds


def _folder(path: str | Path) -> str:
    """A folder as messages show it: ``clean/``, never ``clean//``."""
    from ferclean._outputs import display_path

    return display_path(path, folder=True)


@contextmanager
def _report_outputs(command: str) -> Iterator[None]:
    """Print the output guard's one-line notes (what was replaced, what dead runs left and
    was cleared) on stderr while a command runs."""
    logger = logging.getLogger("ferclean.outputs")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"ferclean {command}: %(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _interactive() -> bool:
    return sys.stderr.isatty()


def _status(desc: str):  # -> Progress
    """A status line with the elapsed time on stderr, for a library call that can take
    seconds on FER-2013 and draws no progress bar of its own."""
    from ferclean._progress import Progress

    return Progress(None, desc, enabled=_interactive(), tick=0.5)


class Command:
    """One sub-command: ``register`` declares its options, ``run`` calls the library.

    Every command is tested through :func:`main`.

    Examples
    --------
    >>> main(["audit", "--demo", "--only", "exact_duplicate", "--json",
    ...       "--out", __import__("tempfile").mkdtemp()])  # doctest: +ELLIPSIS
    {...
    0
    """

    name: str = ""
    help: str = ""

    def register(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(self.name, help=self.help, description=self.help)
        parser.set_defaults(command=self)
        self.add_arguments(parser)
        return parser

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Declare the command's options."""

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


def _count(text: str) -> int:
    """An argparse type: a whole number, 1 or more.

    Examples
    --------
    >>> _count("5000")
    5000
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more; got {value}")
    return value


class ConvertCommand(Command):
    name = "convert"
    help = "Convert a dataset between forms (CSV, image folder, zip, npz, Parquet)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        forms = ("csv", "folder", "zip", "npz", "parquet")
        parser.add_argument("src", help="input dataset: Kaggle CSV, image folder, .zip, "
                            "ferclean .npz, .parquet or a folder of Parquet shards")
        parser.add_argument("dst", help="output path: .csv, .zip, .npz, .parquet or a folder "
                            "(of Parquet shards with --shard-size)")
        parser.add_argument("--from", dest="src_format", choices=forms,
                            help="form of SRC (default: guessed from its extension; a folder "
                            "is an image folder, or Parquet shards if it holds them)")
        parser.add_argument("--to", dest="dst_format", choices=forms,
                            help="form of DST (default: from its extension; no extension "
                            "means a folder)")
        parser.add_argument("--shard-size", type=_count, metavar="N",
                            help="write DST as a folder of Parquet shards of N images each "
                            "(part-00000.parquet, ...); from Parquet input this streams, "
                            "one shard in memory at a time")
        parser.add_argument("--image-format", choices=("jpg", "png"), default="jpg",
                            help="image encoding for folder/zip output; jpg is lossy (default "
                            "jpg, like the FER-2013 download), png is lossless")
        parser.add_argument("--on-bad", choices=ON_BAD_CHOICES, default="raise", help=_ON_BAD_HELP)
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="DST"))

    def run(self, args: argparse.Namespace) -> int:
        from ferclean.io import convert

        ds = convert(
            args.src, args.dst, src_format=args.src_format, dst_format=args.dst_format,
            image_format=args.image_format, shard_size=args.shard_size, on_bad=args.on_bad,
            overwrite=args.overwrite, progress=_interactive(),
        )
        if ds is None:  # streamed from Parquet to shards: the output says how many
            from ferclean.io.parquet import read_shards_description

            n = read_shards_description(args.dst)["n_images"]
        else:
            n = len(ds)
        print(f"wrote {n} images to {args.dst}")
        return EXIT_OK


class DemoCommand(Command):
    name = "demo"
    help = "Write the built-in demo dataset (drawn faces with planted problems)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", required=True,
                            help="output: .csv, .zip, .npz or a folder")
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of the drawn faces and planted problems; the same seed "
                            "gives the same images (default %(default)s)")
        parser.add_argument("--n-faces", type=int, default=1500,
                            help="distinct base faces, before the planted copies and non-faces "
                            "are added (default %(default)s)")
        parser.add_argument("--image-format", choices=("jpg", "png"), default="png",
                            help="image encoding for folder/zip output (default png: lossless, "
                            "so the planted ground truth stays exact)")
        parser.add_argument("--truth", help="also write the planted ground truth as JSON here")
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="--out and --truth"))

    def run(self, args: argparse.Namespace) -> int:
        from ferclean._outputs import check_output, output_file
        from ferclean.demo import make_demo
        from ferclean.io import save

        if args.truth:  # before any work
            check_output(args.truth, folder=False, outputs=[args.out],
                         overwrite=args.overwrite)
        demo = make_demo(seed=args.seed, n_faces=args.n_faces)
        save(demo.dataset, args.out, image_format=args.image_format, overwrite=args.overwrite)
        if args.truth:
            with output_file(args.truth, outputs=[args.out], overwrite=args.overwrite) as tmp:
                tmp.write_text(demo.truth.to_json())
        print(f"wrote {len(demo.dataset)} demo images to {args.out}")
        return EXIT_OK


def _audit_settings(args: argparse.Namespace) -> dict[str, dict]:
    """Auditor parameters from the audit options (shared by audit, clean and publish)."""
    near: dict = {"mirror": True} if args.mirror else {}
    if args.near_radius is not None:
        near["radius"] = args.near_radius
    if args.near_similarity is not None:
        near["similarity"] = args.near_similarity
    params: dict[str, dict] = {"near_duplicate": near} if near else {}
    if args.exact_only:
        params["label_conflict"] = {"duplicates": "exact"}
        params["cross_split_leak"] = {"duplicates": "exact"}
    labels: dict = {"duplicates": "exact"} if args.exact_only else {}
    if getattr(args, "pred_probs", None):
        labels["pred_probs"] = args.pred_probs
    if getattr(args, "ferplus", None):
        labels["ferplus"] = args.ferplus
    if labels:
        params["label_issue"] = labels
    return params


def _add_audit_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mirror", action="store_true",
                        help="near duplicates: also find horizontally flipped copies (the "
                        "near-duplicate auditor then takes about 1.7x as long; "
                        "--plan strict needs it)")
    parser.add_argument("--near-radius", type=int, metavar="BITS",
                        help="near duplicates: Hamming radius of the hash search, of 64 "
                        "bits (default 8; larger finds more candidates, slower)")
    parser.add_argument("--near-similarity", type=float, metavar="S",
                        help="near duplicates: least verified similarity (normalised "
                        "cross-correlation, default 0.97)")
    parser.add_argument("--exact-only", action="store_true",
                        help="label conflicts and cross-split leaks over identical copies "
                        "only, as the study counted them (default: exact and near "
                        "copies, counted separately)")
    parser.add_argument("--pred-probs", metavar="FILE",
                        help="label issues: out-of-fold class probabilities (.npz from "
                        "`ferclean crossval`, matched by image id; or .npy/.npz with one "
                        "row per image in input order); default: none, so only the copies "
                        "vote")
    parser.add_argument("--ferplus", metavar="FILE",
                        help="label issues: the FER+ votes (fer2013new.csv), row-aligned "
                        "with the original Kaggle fer2013.csv; default: none")


def _add_findings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--findings", metavar="DIR",
                        help="act on the findings of an earlier `ferclean audit --out DIR` "
                        "instead of auditing again (the audit options are then ignored)")
    _add_audit_settings(parser)


def _inputs(args: argparse.Namespace) -> list[str]:
    """What a command reads, which its outputs never replace: the data, the findings
    folder, a plan file, the probabilities and votes files."""
    paths = (getattr(args, name, None)
             for name in ("path", "findings", "plan", "pred_probs", "ferplus"))
    return [p for p in paths if p and Path(p).exists()]


def _cleaned(args: argparse.Namespace, ds, plan):  # -> CleanResult
    """Clean with the findings given with --findings, or audit what the plan needs first."""
    from ferclean.cleaning import audit_and_clean, clean
    from ferclean.findings import read_findings

    if args.findings:
        with _status(f"clean with plan {plan.name}"):
            return clean(ds, plan, read_findings(args.findings))
    return audit_and_clean(ds, plan, params=_audit_settings(args), progress=_interactive())


_WIDTH = 100  # printed tables fit a terminal this wide


def _audited(summary: dict) -> str:
    """What was audited: the source and its images per split."""
    splits = ", ".join(f"{name} {n:,}" for name, n in summary.get("splits", {}).items())
    return (f"audited {summary.get('source') or 'a dataset'}: {summary['n_images']:,} images"
            + (f" ({splits})" if splits else ""))


def _issue_note(name: str, entry: dict, settings: dict) -> str | None:
    """What the images count of an issue without groups means (None for grouped issues)."""
    from ferclean.auditors import REGISTRY

    grouped = REGISTRY[name].grouped if name in REGISTRY else entry.get("groups", 0) > 0
    if grouped:
        return None
    if name == "label_issue":
        signals = {"model": "model", "copies": "copies' vote", "ferplus": "FER+"}
        found = entry.get("by_signal", {})
        text = "labels doubted by " + (", ".join(
            f"{label} {found[key]:,}" for key, label in signals.items() if found.get(key))
            or "nothing")
        if not entry.get("model_images"):
            text += "; add --pred-probs (from ferclean crossval) for a model's view"
        return text
    if name == "outlier":
        if entry.get("method") == "mean_iqr" and "lower" in entry:
            return (f"mean grey level outside {entry['lower']:.1f} to {entry['upper']:.1f} "
                    "(mean_iqr rule)")
        return (f"face-model score > {entry.get('threshold', 0.5):g}: likely not faces "
                "(text, blanks, drawings)")
    if name == "class_imbalance":
        under = entry.get("under_represented", {})
        if not any(under.values()):
            return "no class under-represented in any split"
        splits_of: dict[str, list[str]] = {}
        for split, names in under.items():
            for emotion in names:
                splits_of.setdefault(emotion, []).append(split)
        where = "; ".join(f"{e} ({'every split' if len(s) == len(under) else ', '.join(s)})"
                          for e, s in splits_of.items())
        threshold = settings.get(name, {}).get("threshold", 0.5)
        return f"classes under {threshold:g}x the mean of their split: {where}"
    # any other issue: the first sentence of what its auditor says it finds
    first = (REGISTRY[name].description if name in REGISTRY else "").split(". ")[0]
    return first[:1].lower() + first[1:].rstrip(".") if first else "images flagged"


def _summary_table(summary: dict) -> str:
    """The printed audit table, one row per issue, at most ``_WIDTH`` columns wide.

    Grouped issues show groups, images and removable copies (exact and near side by
    side when some issue counts near groups apart); the others say in words what their
    image count means.
    """
    import textwrap

    issues = summary.get("issues", {})
    settings = summary.get("settings", {})
    near = any("near_groups" in entry for entry in issues.values())
    head = ["issue", "groups", "images", "removable"] + (
        ["near_groups", "near_images"] if near else [])
    rows: list[tuple[list[str], str | None]] = []
    for name, entry in issues.items():
        note = _issue_note(name, entry, settings)
        numbers = [entry.get(k, "") for k in head[1:]] if note is None else [
            "-", entry.get("images", 0)]
        rows.append(([name, *(f"{v:,}" if isinstance(v, int) else str(v) for v in numbers)],
                     note))
    widths = [max([len(head[j]), *(len(r[0][j]) for r in rows if j < len(r[0]))])
              for j in range(len(head))]
    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=False)).rstrip()
    lines = [line(head)]
    indent = sum(widths[:3]) + 2 * 3
    for cells, note in rows:
        if note is None:
            lines.append(line(cells))
            continue
        wrapped = textwrap.wrap(note, _WIDTH - indent) or [""]
        lines.append(line(cells) + "  " + wrapped[0])
        lines += [" " * indent + more for more in wrapped[1:]]
    return "\n".join(lines)


def _next_steps(args: argparse.Namespace, summary: dict) -> list[str]:
    """Hints at what to do with an audit: see the images, clean with strict."""
    import shlex

    from ferclean.cleaning import CleaningPlan

    source = shlex.quote(args.path) if args.path else "--demo"
    out = shlex.quote(_folder(args.out))
    steps = []
    if not args.html and not getattr(args, "dask", None):  # --dask: no images here
        steps.append(f"see the images:  ferclean audit {source} --html report.html")
    strict = CleaningPlan.resolve("strict")
    audited = summary.get("settings", {})
    usable = all(i in summary.get("issues", {}) for i in strict.issues) and all(
        audited.get(issue, {}).get(key) == value
        for issue, params in strict.requires.items() for key, value in params.items())
    reuse = (f"--findings {out} " if usable
             else "")
    steps.append(f"clean Training:  ferclean clean {source} {reuse}--plan strict --out CLEANED")
    if not usable:  # strict needs every auditor, and mirrored copies searched
        steps.append("                 (this audits again: strict needs every auditor, "
                     "--mirror and no --exact-only)")
    return steps


def _audit_outputs(args: argparse.Namespace) -> tuple[Path | None, Path | None]:
    """Check --out and --html before the audit runs: the HTML file apart, or inside --out.

    Returns the HTML's path outside --out, and its path relative to --out when inside
    (then it is one of the audit's files, written and replaced with them as a unit).
    """
    from ferclean._outputs import OutputPathError, check_output
    from ferclean.findings import AUDIT_FILES

    check_output(args.out, folder=True, inputs=_inputs(args), overwrite=args.overwrite,
                 known=AUDIT_FILES)
    if not args.html:
        return None, None
    html, out = Path(args.html).resolve(), Path(args.out).resolve()
    if out not in html.parents:
        check_output(args.html, folder=False, inputs=_inputs(args), outputs=[args.out],
                     overwrite=args.overwrite)
        return Path(args.html), None
    inner = html.relative_to(out)
    if inner.parts[0] in AUDIT_FILES:
        raise OutputPathError(f"refusing to write {args.html}: --html would replace the "
                              f"audit's own {inner.parts[0]}")
    return None, inner


def _write_audit(args: argparse.Namespace, ds, result) -> None:  # FaceDataset, AuditResult
    """The audit's files together (findings, summary, figures; the HTML when inside --out)
    as one unit, then the HTML file elsewhere; each through the output guard."""
    from contextlib import nullcontext

    from ferclean._outputs import output_dir, output_file
    from ferclean.findings import AUDIT_FILES

    apart, inner = _audit_outputs(args)
    html_output = (output_file(apart, inputs=_inputs(args), outputs=[args.out],
                               overwrite=args.overwrite) if apart else nullcontext(None))
    with html_output as html_tmp, output_dir(
            args.out, what="ferclean audit", inputs=_inputs(args), overwrite=args.overwrite,
            known=AUDIT_FILES) as tmp:
        result.save(tmp)
        if args.html:
            from ferclean.reporting import write_report

            # into the guard's own temporary file or folder (already checked)
            write_report(ds, result, tmp / inner if inner else html_tmp,
                         figures_dir=tmp / "figures", progress=_interactive(),
                         overwrite=True)


def _audit_on_dask(args: argparse.Namespace, only, skip):  # -> AuditResult
    """``audit --dask``: the Parquet data at PATH audited on the cluster --dask names."""
    from ferclean.auditors import audit
    from ferclean.engines._cluster import connect

    if args.path is None or args.demo:
        raise FercleanError("--dask audits Parquet data: give PATH, a .parquet file or a "
                            "folder of shards (ferclean convert DATA SHARDS/ --shard-size N "
                            "writes one)")
    problems = [(args.html, "--html (its galleries need the images in memory)"),
                (args.on_bad != "raise", f"--on-bad {args.on_bad}"),
                (args.format not in (None, "parquet"), f"--input-format {args.format}")]
    for given, what in problems:
        if given:
            raise FercleanError(f"--dask does not take {what}")
    with _quiet_p2p(), connect(args.dask) as client:
        return audit(args.path, only=only, skip=skip, params=_audit_settings(args),
                     progress=_interactive(), engine="dask", client=client,
                     outlier_sample=args.outlier_sample)


@contextmanager
def _quiet_p2p() -> Iterator[None]:
    """Hide distributed's log line per P2P shuffle (two warnings each, of nothing wrong)
    while the audit runs; a local cluster's scheduler logs in this process."""
    logger = logging.getLogger("distributed.shuffle._scheduler_plugin")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class AuditCommand(Command):
    name = "audit"
    help = "Audit a dataset: duplicates, label conflicts, cross-split leaks, outliers, imbalance."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--out", default="ferclean-audit",
                            help="output folder for findings.csv and summary.json "
                            "(default ./ferclean-audit)")
        parser.add_argument("--only", metavar="A,B",
                            help="comma-separated auditors to run (default: all of them)")
        parser.add_argument("--skip", metavar="A,B",
                            help="comma-separated auditors to leave out (default: none)")
        parser.add_argument("--json", action="store_true",
                            help="print the summary as JSON instead of a table")
        _add_audit_settings(parser)
        parser.add_argument("--html", metavar="FILE",
                            help="also write a self-contained HTML report with image galleries")
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="--out and --html"))
        parser.add_argument("--dask", metavar="local|ADDRESS",
                            help="audit Parquet data (PATH: a .parquet file or a folder of "
                            "shards) on Dask, partition by partition, with the same findings: "
                            "'local' starts a cluster on this machine, an address "
                            "(tcp://host:8786) uses a running scheduler (dask-jobqueue, "
                            "Kubernetes); needs pip install 'ferclean[dask]'")
        parser.add_argument("--outlier-sample", type=int, metavar="N",
                            help="with --dask: images the outliers' face model is fitted on "
                            "(default 20000; as many as PATH holds gives the in-memory "
                            "findings exactly)")

    def run(self, args: argparse.Namespace) -> int:
        from ferclean._json import dumps
        from ferclean.auditors import audit

        _audit_outputs(args)  # before the audit: a refused output costs no waiting
        only = args.only.split(",") if args.only else None
        skip = args.skip.split(",") if args.skip else None
        if args.dask:
            ds, result = None, _audit_on_dask(args, only, skip)
        else:
            if args.outlier_sample is not None:
                raise FercleanError("--outlier-sample is an option of --dask")
            ds = _load_input(args)
            result = audit(ds, only=only, skip=skip, params=_audit_settings(args),
                           progress=_interactive())
        _write_audit(args, ds, result)
        if args.json:
            print(dumps(result.summary), end="")
        else:
            print(_audited(result.summary) + "\n")
            print(_summary_table(result.summary))
            print(f"\nfindings and summary written to {_folder(args.out)}")
            if args.html:
                print(f"HTML report written to {args.html}")
            steps = _next_steps(args, result.summary)
            print("\nnext:\n" + "\n".join(f"  {step}" for step in steps))
        return EXIT_OK


def _removed_table(removed, plan) -> str:  # the manifest's removed table, a CleaningPlan
    """Removed images per split and reason, at most ``_WIDTH`` columns wide.

    A reason is named by the rules that removed the image (``exact_duplicate +
    label_conflict``); a legend below says what each of the plan's rules does.
    """
    import textwrap

    # a rule describes itself as "issue (kinds): what it does from where"
    legend = dict(rule.describe().partition(": ")[::2] for rule in plan.rules)
    because = [" + ".join(rule.partition(": ")[0] for rule in reason.split(" | "))
               for reason in removed["reason"]]
    counts = (removed.assign(because=because).groupby(["split", "because"], sort=False)
              .size().rename("n").reset_index()
              .sort_values(["n", "split", "because"], ascending=[False, True, True]))
    width_n = max(len("removed"), *(len(f"{n:,}") for n in counts["n"]))
    width_split = max(len("split"), *(len(s) for s in counts["split"]))
    room = _WIDTH - width_n - width_split - 4
    lines = [f"{'removed':>{width_n}}  {'split':<{width_split}}  because (rules below)"]
    for row in counts.itertuples():
        text = row.because if len(row.because) <= room else row.because[:room - 3] + "..."
        lines.append(f"{row.n:>{width_n},}  {row.split:<{width_split}}  {text}")
    lines.append(f"\nthe rules of plan {plan.name}:")
    width_name = max(len(name) for name in legend)
    for name, action in legend.items():
        lines += textwrap.wrap(action, _WIDTH, initial_indent=f"  {name:<{width_name}}  ",
                               subsequent_indent=" " * (width_name + 4))
    return "\n".join(lines)


class CleanCommand(Command):
    name = "clean"
    help = "Apply a cleaning plan; write the cleaned data, the removed images and a manifest."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--plan", default="strict",
                            help="a preset (raw, dedup, no-conflicts, no-outliers, seed-final, "
                            "strict; default strict) or a plan file (.json, .yaml)")
        parser.add_argument("--out", required=True,
                            help="output folder (refused if it exists, unless --overwrite)")
        parser.add_argument("--format", dest="out_format",
                            choices=("csv", "folder", "zip", "npz", "parquet"),
                            help="form of the cleaned data (default: the input's form)")
        parser.add_argument("--write-plan", metavar="FILE",
                            help="also save the plan used, to read or edit")
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="--out (and --write-plan)"))
        parser.add_argument("--dask", metavar="local|ADDRESS",
                            help="clean Parquet shards (PATH) on Dask, shard by shard, never "
                            "gathering the pixels: 'local' starts a cluster on this machine, "
                            "else the scheduler's address; needs --findings; writes cleaned/ "
                            "and removed/ shards and manifest.json")
        _add_findings(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ferclean._outputs import check_output, output_file
        from ferclean.cleaning import CleaningPlan, save_clean
        from ferclean.cleaning.outputs import CLEAN_FILES

        inputs = _inputs(args)
        check_output(args.out, folder=True, inputs=inputs, overwrite=args.overwrite,
                     known=CLEAN_FILES)  # before any work: a refused output costs no wait
        if args.write_plan:
            check_output(args.write_plan, folder=False, inputs=inputs, outputs=[args.out],
                         overwrite=args.overwrite)
        plan = CleaningPlan.resolve(args.plan)
        if args.dask:
            manifest = _clean_on_dask(args, plan, inputs)
        else:
            ds = _load_input(args)
            result = _cleaned(args, ds, plan)
            with _status(f"write {_folder(args.out)}"):
                save_clean(result, args.out, format=args.out_format, overwrite=args.overwrite,
                           inputs=inputs)
            manifest = result.manifest
        if args.write_plan:
            with output_file(args.write_plan, inputs=inputs, outputs=[args.out],
                             overwrite=args.overwrite) as tmp:
                plan.save(tmp, overwrite=True)  # its own temp file; .yaml stays YAML
        print(_removed_table(manifest.removed, plan) if len(manifest.removed)
              else "nothing removed")
        relabeled = _relabel_lines(manifest)
        if relabeled:
            print("\n" + "\n".join(relabeled))
        changed = f", relabeled {len(manifest.relabeled)}" if len(manifest.relabeled) else ""
        print(f"\nkept {manifest.info['n_after']} of {manifest.info['n_before']} images"
              f"{changed}; wrote "
              f"{_folder(args.out)} (restore with: ferclean restore {_folder(args.out)} "
              "--out ORIGINAL)")
        return EXIT_OK


def _clean_on_dask(args: argparse.Namespace, plan, inputs: list[str]):  # -> Manifest
    """``clean --dask``: Parquet shards cleaned on a Dask cluster with the given findings."""
    from ferclean.engines._cluster import connect
    from ferclean.engines.dask_clean import clean_shards
    from ferclean.findings import read_findings

    if args.path is None or getattr(args, "demo", False):
        raise FercleanError("--dask cleans Parquet shards: give their folder as PATH "
                            "(ferclean convert DATA SHARDS/ --shard-size N writes one)")
    if not args.findings:
        raise FercleanError("--dask needs --findings AUDIT/ (audit first: ferclean audit "
                            "SHARDS/ --out AUDIT/)")
    if args.out_format not in (None, "parquet"):
        raise FercleanError("--dask writes Parquet shards; leave out --format")
    findings = read_findings(args.findings)
    with connect(args.dask) as client:
        return clean_shards(args.path, plan, findings, args.out, client=client,
                            overwrite=args.overwrite, inputs=inputs, progress=_interactive())


def _relabel_lines(manifest) -> list[str]:  # a Manifest
    """What a relabel rule changed: images per split, issue and signal, and what it left."""
    counts = manifest.info.get("relabel_counts", {})
    if manifest.relabeled.empty and not any(counts.values()):
        return []
    lines = [f"relabeled {len(manifest.relabeled)} images to their suggested label "
             "(removal wins; so does the first relabel rule):"]
    for row in manifest.relabel_summary().itertuples():
        lines.append(f"  {row.images:>6,}  {row.split:<11}  {row.issue} ({row.signal})")
    left = [f"{counts[k]} {text}" for k, text in (
        ("no_suggestion", "flagged without a suggestion kept their label"),
        ("same_label", "already carried it"), ("removed", "were removed instead"),
        ("disputed", "disputed")) if counts.get(k)]
    if left:
        lines.append("  " + "; ".join(left))
    return lines


class RestoreCommand(Command):
    name = "restore"
    help = "Rebuild the original dataset from a clean output folder or a release."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("folder", help="output folder of ferclean clean or ferclean publish")
        parser.add_argument("--out", required=True,
                            help="where to write the original: .csv, .zip, .npz or a folder")
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="--out"))

    def run(self, args: argparse.Namespace) -> int:
        from ferclean._outputs import check_not_input
        from ferclean.cleaning import restore_from
        from ferclean.io import save

        check_not_input(args.out, [args.folder])  # the folder read is this command's input
        if Path(args.folder).exists() and not Path(args.folder).is_dir():
            raise NotADirectoryError(
                f"{args.folder} is a file: give the folder that ferclean clean or ferclean "
                "publish wrote (the one holding manifest.json)")
        with _status(f"read {_folder(args.folder)}"):
            ds = restore_from(args.folder)
        save(ds, args.out, overwrite=args.overwrite, image_format="png",
             progress=_interactive())
        print(f"restored {len(ds)} images (checksum verified) to {args.out}")
        return EXIT_OK


class PublishCommand(Command):
    name = "publish"
    help = "Publish a cleaned, self-describing release (data, manifest, card, checksums)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--plan", default="strict", help="preset or plan file "
                            "(default strict)")
        parser.add_argument("--out", required=True,
                            help="release folder (refused if it exists, unless --overwrite)")
        parser.add_argument("--name", help="file-name stem of the release's data files "
                            "(default fer2013-PLAN)")
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="--out"))
        _add_findings(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ferclean._outputs import check_output
        from ferclean.cleaning import CleaningPlan, publish
        from ferclean.cleaning.publish import RELEASE_FILES

        inputs = _inputs(args)
        check_output(args.out, folder=True, inputs=inputs, overwrite=args.overwrite,
                     known=RELEASE_FILES)  # before any work: a refused output costs no wait
        ds = _load_input(args)
        plan = CleaningPlan.resolve(args.plan)
        result = _cleaned(args, ds, plan)
        with _status(f"publish {_folder(args.out)}"):
            out = publish(result, args.out, name=args.name, overwrite=args.overwrite,
                          inputs=inputs)
        print(f"published {out}/ (see {out}/README.md; verify with sha256sum -c SHA256SUMS)")
        print(_zip_note(out))
        return EXIT_OK


def _zip_note(release: Path) -> str:
    """One line on the release's zip: the original files, or JPEG re-encoded (how lossy)."""
    meta = json.loads((release / "metadata.json").read_text())
    zip_images, data = meta["data_zip"], meta["files"]
    zip_name = next(f for f in data if f.startswith("data/") and f.endswith(".zip"))
    csv_name = next(f for f in data if f.startswith("data/") and f.endswith(".csv"))
    if zip_images["images"] == "original files":
        return f"{zip_name} holds the original image files, byte for byte"
    return (f"note: {zip_name} holds JPEG images re-encoded from the exact pixels (quality "
            f"{zip_images['jpeg_quality']}; at most {zip_images['max_grey_level_difference']} "
            f"grey levels off); {csv_name} holds the exact pixels")


def _require_bench(command: str) -> bool:
    try:
        import flax  # noqa: F401
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError:
        print(f"ferclean {command}: needs the JAX extra: pip install 'ferclean[bench]'",
              file=sys.stderr)
        return False
    return True


class CrossvalCommand(Command):
    name = "crossval"
    help = ("Out-of-fold class probabilities for label-issue detection: k folds with every "
            "group of copies inside one fold; write them for `audit --pred-probs`.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from ferclean.learning.crossval import FEATURE_MODELS
        from ferclean.learning.models import model_names

        _add_input(parser, seed_help="seed of the folds and models, and of the demo data "
                   "(default %(default)s)")
        parser.add_argument("--out", required=True, metavar="FILE.npz",
                            help="where to write the probabilities (.npz)")
        parser.add_argument("--model", default="patches",
                            choices=(*FEATURE_MODELS, *model_names()),
                            help="patches: learned patch features + LDA, CPU, about ten "
                            "minutes on FER-2013 Training; or a reference net (JAX, for a "
                            "GPU) (default %(default)s)")
        parser.add_argument("--folds", type=int, default=5,
                            help="number of folds (default %(default)s)")
        parser.add_argument("--filters", type=int, default=256,
                            help="patches model: dictionary size; fewer is faster and less "
                            "accurate (default %(default)s)")
        parser.add_argument("--splits", default="Training", metavar="A,B",
                            help="splits that get probabilities, comma-separated (default "
                            "%(default)s)")
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="--out"))

    def run(self, args: argparse.Namespace) -> int:
        from ferclean._outputs import check_output
        from ferclean.learning.crossval import FEATURE_MODELS, crossval

        if args.model not in FEATURE_MODELS and not _require_bench(self.name):
            return EXIT_ERROR
        check_output(args.out, folder=False, overwrite=args.overwrite, inputs=[args.path])
        ds = _load_input(args)
        params = {"n_filters": args.filters} if args.model in FEATURE_MODELS else None
        result = crossval(ds, model=args.model, folds=args.folds, seed=args.seed,
                          splits=tuple(args.splits.split(",")), params=params,
                          progress=_interactive())
        result.save(args.out, overwrite=args.overwrite)
        info = result.info
        print(f"{info['n_images']} images of {', '.join(info['splits'])}, {args.folds} folds "
              f"({info['copy_groups']} groups of copies kept inside one fold): out-of-fold "
              f"accuracy {info['accuracy']:.4f} with {args.model}, {info['seconds']:.0f} s")
        print(f"probabilities written to {args.out}")
        print(f"\nnext:\n  ferclean audit {args.path or '--demo'} --pred-probs {args.out}")
        return EXIT_OK


class TrainCommand(Command):
    name = "train"
    help = ("Train a reference model (Training split; PublicTest for early stopping and the "
            "learning-rate schedule) and save the best checkpoint.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from ferclean.learning.models import model_names

        _add_input(parser, seed_help="seed of the training run (initial weights, shuffling, "
                   "dropout) and of the demo data (default %(default)s)")
        from ferclean.learning.training.presets import TRAINING_PRESETS

        parser.add_argument("--preset", default="study", choices=sorted(TRAINING_PRESETS),
                            help="training recipe (default %(default)s: the study's CNN-LSTM "
                            "as the study trained it; see docs/models.md); the options below "
                            "override its fields")
        parser.add_argument("--model", choices=model_names(),
                            help="reference model (default: the preset's, cnn_lstm for the "
                            "study; see docs/models.md)")
        parser.add_argument("--out", required=True, help="checkpoint folder")
        parser.add_argument("--epochs", type=int,
                            help="most epochs to train; early stopping usually ends sooner "
                            "(default: the preset's, 50 for the study)")
        parser.add_argument("--batch-size", type=int,
                            help="images per training step (default: the preset's, 64)")
        parser.add_argument("--lr", type=float,
                            help="initial learning rate (default: the preset's, Adam's 2e-3 "
                            "for the study)")
        parser.add_argument("--patience", type=int,
                            help="stop after this many epochs without a better PublicTest "
                            "loss or accuracy, whichever the preset monitors (default: the "
                            "preset's, 5 for the study)")
        parser.add_argument("--lr-patience", type=int,
                            help="cut the learning rate after this many epochs without a "
                            "better monitored value (default: the preset's, 2 for the study)")
        parser.add_argument("--class-weight", choices=("balanced",),
                            help="weight the loss by inverse class frequency (default: "
                            "unweighted)")
        parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=JSON",
                            help="model option, e.g. bn_momentum=0.9 (repeatable; default: the "
                            "model's own settings)")
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="--out"))

    def run(self, args: argparse.Namespace) -> int:
        if not _require_bench(self.name):
            return EXIT_ERROR
        from ferclean.learning import train, training_preset

        given = {"model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
                 "learning_rate": args.lr, "early_stopping_patience": args.patience,
                 "lr_patience": args.lr_patience, "class_weight": args.class_weight}
        overrides = {key: value for key, value in given.items() if value is not None}
        model = overrides.get("model") or training_preset(args.preset).model
        if args.model_arg:
            overrides["model_kwargs"] = _model_kwargs(model, args.model_arg)
        config = training_preset(args.preset, **overrides, seed=args.seed).validate()
        from ferclean._outputs import check_output
        from ferclean.learning.training.checkpoints import RUN_FILES

        # before loading: a file, an input or a stranger's folder as --out is refused now
        check_output(args.out, folder=True, inputs=[args.path], overwrite=args.overwrite,
                     known=RUN_FILES)
        ds = _load_input(args)
        # out= keeps the best checkpoint so far on disk if the run is interrupted
        result = train(ds, config, out=args.out, progress=_interactive(),
                       overwrite=args.overwrite)
        result.save(args.out, overwrite=True)
        print(result.history.to_string(index=False))
        print(f"best epoch {result.best_epoch}; checkpoint in {_folder(args.out)}")
        return EXIT_OK


def _model_kwargs(model: str, items: Sequence[str]) -> dict:
    """``--model-arg KEY=JSON`` options, checked against the model's own options."""
    import dataclasses

    from ferclean.learning.models import MODELS

    cls = MODELS[model].resolve()
    options = [f.name for f in dataclasses.fields(cls)
               if f.init and f.name not in ("parent", "name")] if dataclasses.is_dataclass(
                   cls) else None
    kwargs = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not key or not equals:
            raise ValueError(f"--model-arg {item!r}: expected KEY=JSON, e.g. bn_momentum=0.9")
        if options is not None and key not in options:
            raise ValueError(f"--model-arg {item!r}: {model} has no option {key!r}; its "
                             f"options: {', '.join(options)}")
        try:
            kwargs[key] = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError(f"--model-arg {item!r}: the value must be JSON, e.g. 0.9, "
                             '[3, 1] or "same"') from None
    return kwargs


class EvaluateCommand(Command):
    name = "evaluate"
    help = ("Evaluate a checkpoint: accuracy, loss, macro-F1, per-class report, confusion "
            "matrix and saliency maps (PNG + JSON).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--checkpoint", required=True, help="folder from ferclean train")
        parser.add_argument("--split", default="PrivateTest",
                            choices=("PrivateTest", "PublicTest", "Training"),
                            help="split to evaluate on (default %(default)s)")
        parser.add_argument("--out", help="folder for metrics and figures (default: print only)")
        parser.add_argument("--tta", default="model", choices=("model", "none", "flip",
                                                               "ten_crop"),
                            help="test-time augmentation: average the probabilities over the "
                            "image and its mirror (flip), or over ten crops (default "
                            "%(default)s: what the checkpoint's training preset chose)")
        parser.add_argument("--json", action="store_true", help="print all metrics as JSON")
        parser.add_argument("--overwrite", action="store_true",
                            help=_OVERWRITE_HELP.format(what="--out"))

    def run(self, args: argparse.Namespace) -> int:
        if not _require_bench(self.name):
            return EXIT_ERROR
        from ferclean._json import dumps
        from ferclean.learning import evaluate

        if args.out:
            from ferclean._outputs import check_output
            from ferclean.learning.evaluation import checkpoint_inputs

            check_output(args.out, folder=True, overwrite=args.overwrite,
                         inputs=[args.path, *checkpoint_inputs(args.checkpoint)])
        ds = _load_input(args)
        with _status(f"evaluate on {args.split}"):
            evaluation = evaluate(args.checkpoint, ds, split=args.split,
                                  tta=None if args.tta == "none" else args.tta)
        if args.out:
            evaluation.save(args.out, overwrite=args.overwrite)
        metrics = evaluation.metrics
        if args.json:
            print(dumps(metrics), end="")
        else:
            print(f"{args.split}: accuracy {metrics['accuracy']:.4f}, loss "
                  f"{metrics['loss']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")
        return EXIT_OK


class BenchCommand(Command):
    name = "bench"
    help = ("Train the reference models on each cleaning variation, honest protocol next to "
            "the study's flawed one, and report what each step does.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--profile", default="quick", choices=("quick", "full", "smoke"),
                            help="quick: a labelled subset for a 2-core CPU (~20 min); full: "
                            "the study's setting, for a GPU; smoke: seconds, for tests "
                            "(default %(default)s)")
        parser.add_argument("--out", help="results folder (default "
                            "benchmarks/results/<profile>); finished runs are resumed")
        parser.add_argument("--workers", type=int, default=1,
                            help="run the profile in this many processes and merge their "
                            "results (several share one GPU well; default 1)")
        parser.add_argument("--shard", type=_shard,
                            help="I/N: run only every N-th run from the I-th (0-based) into "
                            "OUT/shards/; a later call without --shard merges")
        parser.add_argument("--merge-only", action="store_true",
                            help="only merge OUT/shards/ into results.json and rewrite the "
                            "table and plots; train nothing")
        parser.add_argument("--rederive", metavar="DIR",
                            help="re-derive DIR/results.json with today's statistics (Holm, "
                            "bootstrap, collapse flags) into DIR/rederived.md and .json, "
                            "with the cells to re-run; train nothing. With PATH, also the "
                            "single de-leaked PrivateTest and which stored sets match it")

    def run(self, args: argparse.Namespace) -> int:
        if args.rederive:  # statistics of stored runs: no JAX needed
            from ferclean.bench.rederive import REDERIVED_MD, rederive

            ds = _load_input(args) if args.path is not None else None
            rederive(args.rederive, ds)
            print(Path(args.rederive, REDERIVED_MD).read_text())
            return EXIT_OK
        if not _require_bench(self.name):
            return EXIT_ERROR
        from ferclean.bench import run_suite, run_suite_parallel

        if args.workers < 1:
            raise SystemExit(f"--workers must be >= 1; got {args.workers}")
        if args.workers > 1 and args.shard is not None:
            raise SystemExit("give either --workers or --shard, not both")
        out = args.out or f"benchmarks/results/{args.profile}"
        if args.merge_only:  # results and shard files only: no images to load
            run_suite(None, args.profile, out, train_missing=False)
        elif args.shard is not None:
            run_suite(_load_input(args), args.profile, out, progress=True, shard=args.shard)
            print(f"shard {args.shard[0]}/{args.shard[1]} done; results in "
                  f"{_folder(Path(out) / 'shards')}")
            return EXIT_OK
        elif args.workers > 1:
            run_suite_parallel(_load_input(args), args.profile, out, workers=args.workers,
                               progress=True)
        else:
            run_suite(_load_input(args), args.profile, out, progress=True)
        print(Path(out, "table.md").read_text())
        print(f"results in {_folder(out)} (results.json, table.md, plots)")
        return EXIT_OK


def _shard(text: str) -> tuple[int, int]:
    """``"I/N"`` to ``(I, N)`` for ``--shard``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, e.g. 0/4; got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"need 0 <= I < N; got {text!r}")
    return index, count


COMMANDS: tuple[type[Command], ...] = (
    AuditCommand, CrossvalCommand, CleanCommand, RestoreCommand, PublishCommand, TrainCommand,
    EvaluateCommand, BenchCommand, ConvertCommand, DemoCommand,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``ferclean`` argument parser with every sub-command registered.

    Examples
    --------
    >>> build_parser().parse_args(["convert", "a.csv", "b.npz"]).dst
    'b.npz'
    """
    parser = argparse.ArgumentParser(
        prog="ferclean",
        description="Audit, clean and benchmark face-expression datasets (FER-2013 first).",
    )
    parser.add_argument("--version", action="version", version=f"ferclean {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command().register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = str(pathlib.Path(tempfile.mkdtemp()) / "d.npz")
    >>> main(["demo", "--n-faces", "300", "--out", out])  # doctest: +ELLIPSIS
    wrote ... demo images to ...
    0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        parser.print_help()
        return EXIT_USAGE
    name = args.command.name
    try:
        with _report_outputs(name), _cli_warnings(name, args):
            return args.command.run(args)
    except (FercleanError, OSError, ValueError) as exc:
        print(f"ferclean {name}: error: {_cli_message(_error_text(exc), args)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"ferclean {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: one line all the same, the traceback on request
        if os.environ.get("FERCLEAN_TRACEBACK"):
            raise
        print(f"ferclean {name}: internal error: {type(exc).__name__}: "
              f"{_cli_message(_error_text(exc), args)} (FERCLEAN_TRACEBACK=1 shows where; "
              "please report it)", file=sys.stderr)
        return EXIT_ERROR


# Library messages name keyword arguments; a CLI user needs the flags. Each pattern is
# a phrase the library writes, and what the command line calls it.
_FLAGS_FOR_KEYWORDS: tuple[tuple[re.Pattern[str], str], ...] = (
    # "--on-bad skip (on_bad='skip')": the flag is named already, drop the keyword
    (re.compile(r"(--[a-z][\w-]*(?: [\w.'\"]+)?) \([a-z_]+=[^()]*\)"), r"\1"),
    (re.compile(r"\boverwrite=True\b"), "--overwrite"),
    (re.compile(r"\bon_bad=['\"]?(\w+)['\"]?"), r"--on-bad \1"),
    (re.compile(r"\bimage_format=['\"]?(\w+)['\"]?"), r"--image-format \1"),
    (re.compile(r"\bnear_duplicate\.mirror=True \(the audit used [^)]*\)"),
     "--mirror (the audit ran without it)"),
    (re.compile(r"\b(?:label_conflict|cross_split_leak)\.duplicates='all' \(the audit used "
                r"'exact'\)"), "no --exact-only (the audit had it)"),
    (re.compile(r"\(or use audit_and_clean / ferclean clean without --findings\)"),
     "(or leave out --findings to audit again)"),
)
_MAX_MESSAGE = 600  # characters: a 10 MB header line must not fill the terminal


def _error_text(exc: BaseException) -> str:
    """An exception as one line: an OS error as ``path: what went wrong``."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        text = f"{exc.filename}: {exc.strerror[:1].lower()}{exc.strerror[1:]}"
    elif isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _cli_message(text: str, args: argparse.Namespace) -> str:
    """A library message as the CLI user should read it: flags, not keywords; bounded.

    Examples
    --------
    >>> ns = argparse.Namespace(command=ConvertCommand(), src="a.csv", dst="b.xyz")
    >>> _cli_message("b.xyz: cannot tell the format from the name; use a .csv file, or "
    ...              "pass format= one of csv, npz", ns)
    'b.xyz: cannot tell the format from the name; use a .csv file, or pass --to one of csv, npz'
    >>> _cli_message("b.csv exists; pass --overwrite (overwrite=True) to replace it", ns)
    'b.csv exists; pass --overwrite to replace it'
    """
    for pattern, flag in _FLAGS_FOR_KEYWORDS:
        text = pattern.sub(flag, text)
    if "format=" in text:
        name = args.command.name
        if name == "convert":
            flag = "--to" if text.startswith(str(args.dst)) else "--from"
        elif name in ("demo", "restore"):  # the output's extension decides: no flag
            flag = None
        else:
            flag = "--input-format"
        text = (re.sub(r"\bformat= ?", f"{flag} ", text) if flag
                else re.sub(r",? or pass format=.*$", "", text))
    if len(text) > _MAX_MESSAGE:
        text = f"{text[:_MAX_MESSAGE]}... ({len(text) - _MAX_MESSAGE:,} more characters)"
    return text


@contextmanager
def _cli_warnings(command: str, args: argparse.Namespace) -> Iterator[None]:
    """Show warnings as one line each, ``ferclean CMD: warning: ...``, in CLI terms.

    Only how a warning is printed changes (``warnings.formatwarning``): filters, and
    anything recording warnings (``pytest.warns``), work as before.
    """
    import warnings

    def one_line(message, category, filename, lineno, line=None) -> str:
        return f"ferclean {command}: warning: {_cli_message(_error_text(message), args)}\n"

    before = warnings.formatwarning
    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = before


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
