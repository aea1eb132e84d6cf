"""The ``ferclean`` command line: argument parsing only.

Each sub-command is a small class with ``register(subparsers)`` and ``run(args)``; ``run``
calls one library function, writes its output and returns the exit code. Test it with
``main([...])``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ferclean._version import __version__
from ferclean.errors import ON_BAD_CHOICES, FercleanError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def _add_input(parser: argparse.ArgumentParser, *, demo: bool = True) -> None:
    parser.add_argument(
        "path", nargs="?", help="dataset: Kaggle CSV, image folder, .zip or ferclean .npz"
    )
    parser.add_argument("--input-format", dest="format", choices=("csv", "folder", "zip", "npz"),
                        help="force the input form instead of guessing it from PATH")
    parser.add_argument("--on-bad", choices=ON_BAD_CHOICES, default="raise",
                        help="bad rows/images: stop with an error (default), skip them, or skip "
                        "and report them")
    if demo:
        parser.add_argument("--demo", action="store_true",
                            help="use the built-in demo data (the default when PATH is omitted)")
        parser.add_argument("--seed", type=int, default=0, help="demo data seed (default 0)")


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


def _interactive() -> bool:
    return sys.stderr.isatty()


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


class ConvertCommand(Command):
    name = "convert"
    help = "Convert a dataset between forms (CSV, image folder, zip, npz)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("src", help="input dataset")
        parser.add_argument("dst", help="output path: .csv, .zip, .npz or a folder")
        parser.add_argument("--from", dest="src_format", choices=("csv", "folder", "zip", "npz"))
        parser.add_argument("--to", dest="dst_format", choices=("csv", "folder", "zip", "npz"))
        parser.add_argument("--image-format", choices=("jpg", "png"), default="jpg",
                            help="image encoding for folder/zip output; jpg is lossy (default "
                            "jpg, like the FER-2013 download), png is lossless")
        parser.add_argument("--on-bad", choices=ON_BAD_CHOICES, default="raise")
        parser.add_argument("--overwrite", action="store_true", help="replace an existing DST")

    def run(self, args: argparse.Namespace) -> int:
        from ferclean.io import convert

        ds = convert(
            args.src, args.dst, src_format=args.src_format, dst_format=args.dst_format,
            image_format=args.image_format, on_bad=args.on_bad, overwrite=args.overwrite,
            progress=_interactive(),
        )
        print(f"wrote {len(ds)} images to {args.dst}")
        return EXIT_OK


class DemoCommand(Command):
    name = "demo"
    help = "Write the built-in demo dataset (drawn faces with planted problems)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--out", required=True,
                            help="output: .csv, .zip, .npz or a folder")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--n-faces", type=int, default=1500, help="distinct base faces")
        parser.add_argument("--image-format", choices=("jpg", "png"), default="png",
                            help="image encoding for folder/zip output (default png: lossless, "
                            "so the planted ground truth stays exact)")
        parser.add_argument("--truth", help="also write the planted ground truth as JSON here")
        parser.add_argument("--overwrite", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        from ferclean.demo import make_demo
        from ferclean.io import save

        demo = make_demo(seed=args.seed, n_faces=args.n_faces)
        save(demo.dataset, args.out, image_format=args.image_format, overwrite=args.overwrite)
        if args.truth:
            from ferclean._atomic import atomic_file

            with atomic_file(args.truth, overwrite=args.overwrite) as tmp:
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


def _add_findings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--findings", metavar="DIR",
                        help="act on the findings of an earlier `ferclean audit --out DIR` "
                        "instead of auditing again (the audit options are then ignored)")
    _add_audit_settings(parser)


def _cleaned(args: argparse.Namespace, ds, plan):  # -> CleanResult
    """Clean with the findings given with --findings, or audit what the plan needs first."""
    from ferclean.cleaning import audit_and_clean, clean
    from ferclean.findings import read_findings

    if args.findings:
        return clean(ds, plan, read_findings(args.findings))
    return audit_and_clean(ds, plan, params=_audit_settings(args))


def _summary_table(table) -> str:  # table: DataFrame of AuditResult.table()
    """The printed audit table; the near columns only when some issue counts near groups."""
    if not (table["near_groups"].astype(str) != "").any():
        table = table.drop(columns=["near_groups", "near_images"])
    return table.to_string(index=False)


class AuditCommand(Command):
    name = "audit"
    help = "Audit a dataset: duplicates, label conflicts, cross-split leaks, outliers, imbalance."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--out", default="ferclean-audit",
                            help="output folder for findings.csv and summary.json "
                            "(default ./ferclean-audit)")
        parser.add_argument("--only", help="comma-separated auditors to run")
        parser.add_argument("--skip", help="comma-separated auditors to leave out")
        parser.add_argument("--json", action="store_true",
                            help="print the summary as JSON instead of a table")
        _add_audit_settings(parser)
        parser.add_argument("--html", metavar="FILE",
                            help="also write a self-contained HTML report with image galleries")

    def run(self, args: argparse.Namespace) -> int:
        from ferclean._atomic import refuse_input_overwrite
        from ferclean._json import dumps
        from ferclean.auditors import audit

        ds = _load_input(args)
        refuse_input_overwrite(args.out, args.path)
        if args.html:
            refuse_input_overwrite(args.html, args.path)
        only = args.only.split(",") if args.only else None
        skip = args.skip.split(",") if args.skip else None
        result = audit(ds, only=only, skip=skip, params=_audit_settings(args))
        result.save(args.out)
        if args.html:
            from ferclean.reporting import write_report

            write_report(ds, result, args.html, figures_dir=Path(args.out) / "figures")
        if args.json:
            print(dumps(result.summary), end="")
        else:
            print(_summary_table(result.table()))
            print(f"\nfindings and summary written to {Path(args.out)}/")
            if args.html:
                print(f"HTML report written to {args.html}")
        return EXIT_OK


class CleanCommand(Command):
    name = "clean"
    help = "Apply a cleaning plan; write the cleaned data, the removed images and a manifest."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--plan", default="strict",
                            help="a preset (raw, dedup, no-conflicts, no-outliers, seed-final, "
                            "strict; default strict) or a plan file (.json, .yaml)")
        parser.add_argument("--out", required=True, help="output folder (must not exist)")
        parser.add_argument("--format", dest="out_format",
                            choices=("csv", "folder", "zip", "npz"),
                            help="form of the cleaned data (default: the input's form)")
        parser.add_argument("--write-plan", metavar="FILE",
                            help="also save the plan used, to read or edit")
        parser.add_argument("--overwrite", action="store_true")
        _add_findings(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ferclean.cleaning import CleaningPlan

        ds = _load_input(args)
        plan = CleaningPlan.resolve(args.plan)
        result = _cleaned(args, ds, plan)
        result.save(args.out, format=args.out_format, overwrite=args.overwrite)
        if args.write_plan:
            plan.save(args.write_plan)
        manifest = result.manifest
        print(manifest.summary().to_string(index=False) if len(manifest.removed)
              else "nothing removed")
        print(f"\nkept {len(result.cleaned)} of {len(ds)} images; wrote {args.out}/ "
              f"(restore with: ferclean restore {args.out} --out ORIGINAL)")
        return EXIT_OK


class RestoreCommand(Command):
    name = "restore"
    help = "Rebuild the original dataset from a clean output folder or a release."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("folder", help="output of ferclean clean or ferclean publish")
        parser.add_argument("--out", required=True,
                            help="where to write the original: .csv, .zip, .npz or a folder")
        parser.add_argument("--overwrite", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        from ferclean.cleaning import restore_from
        from ferclean.io import save

        ds = restore_from(args.folder)
        save(ds, args.out, overwrite=args.overwrite, image_format="png")
        print(f"restored {len(ds)} images (checksum verified) to {args.out}")
        return EXIT_OK


class PublishCommand(Command):
    name = "publish"
    help = "Publish a cleaned, self-describing release (data, manifest, card, checksums)."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--plan", default="strict", help="preset or plan file "
                            "(default strict)")
        parser.add_argument("--out", required=True, help="release folder (must not exist)")
        parser.add_argument("--name", help="file-name stem of the release's data files")
        parser.add_argument("--overwrite", action="store_true")
        _add_findings(parser)

    def run(self, args: argparse.Namespace) -> int:
        from ferclean.cleaning import CleaningPlan, publish

        ds = _load_input(args)
        plan = CleaningPlan.resolve(args.plan)
        result = _cleaned(args, ds, plan)
        out = publish(result, args.out, name=args.name, overwrite=args.overwrite)
        print(f"published {out}/ (see {out}/README.md; verify with sha256sum -c SHA256SUMS)")
        return EXIT_OK


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


class TrainCommand(Command):
    name = "train"
    help = ("Train a reference model (Training split; PublicTest for early stopping and the "
            "learning-rate schedule) and save the best checkpoint.")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        from ferclean.learning.models import model_names

        _add_input(parser)
        parser.add_argument("--model", default="cnn_lstm", choices=model_names())
        parser.add_argument("--out", required=True, help="checkpoint folder")
        parser.add_argument("--epochs", type=int, default=50)
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
        parser.add_argument("--patience", type=int, default=5, help="early-stopping patience")
        parser.add_argument("--lr-patience", type=int, default=2,
                            help="reduce-LR-on-plateau patience (factor 0.1)")
        parser.add_argument("--class-weight", choices=("balanced",),
                            help="weight the loss by inverse class frequency")
        parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=JSON",
                            help="model option, e.g. bn_momentum=0.9 (repeatable)")
        parser.add_argument("--overwrite", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        if not _require_bench(self.name):
            return EXIT_ERROR
        from ferclean.learning import TrainConfig, train

        model_kwargs = {}
        for item in args.model_arg:
            key, _, value = item.partition("=")
            try:
                model_kwargs[key] = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"--model-arg {item!r}: the value must be JSON") from None
        config = TrainConfig(model=args.model, model_kwargs=model_kwargs, epochs=args.epochs,
                             batch_size=args.batch_size, learning_rate=args.lr,
                             early_stopping_patience=args.patience,
                             lr_patience=args.lr_patience, class_weight=args.class_weight,
                             seed=args.seed)
        ds = _load_input(args)
        # out= keeps the best checkpoint so far on disk if the run is interrupted
        result = train(ds, config, out=args.out, progress=_interactive(),
                       overwrite=args.overwrite)
        result.save(args.out, overwrite=True)
        print(result.history.to_string(index=False))
        print(f"best epoch {result.best_epoch}; checkpoint in {args.out}/")
        return EXIT_OK


class EvaluateCommand(Command):
    name = "evaluate"
    help = ("Evaluate a checkpoint: accuracy, loss, macro-F1, per-class report, confusion "
            "matrix and saliency maps (PNG + JSON).")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        _add_input(parser)
        parser.add_argument("--checkpoint", required=True, help="folder from ferclean train")
        parser.add_argument("--split", default="PrivateTest",
                            choices=("PrivateTest", "PublicTest", "Training"))
        parser.add_argument("--out", help="folder for metrics and figures (default: print only)")
        parser.add_argument("--json", action="store_true", help="print all metrics as JSON")

    def run(self, args: argparse.Namespace) -> int:
        if not _require_bench(self.name):
            return EXIT_ERROR
        from ferclean._json import dumps
        from ferclean.learning import evaluate

        ds = _load_input(args)
        evaluation = evaluate(args.checkpoint, ds, split=args.split)
        if args.out:
            evaluation.save(args.out)
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
                            "the study's setting, for a GPU; smoke: seconds, for tests")
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

    def run(self, args: argparse.Namespace) -> int:
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
            print(f"shard {args.shard[0]}/{args.shard[1]} done; results in {out}/shards/")
            return EXIT_OK
        elif args.workers > 1:
            run_suite_parallel(_load_input(args), args.profile, out, workers=args.workers,
                               progress=True)
        else:
            run_suite(_load_input(args), args.profile, out, progress=True)
        print(Path(out, "table.md").read_text())
        print(f"results in {out}/ (results.json, table.md, plots)")
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
    AuditCommand, CleanCommand, RestoreCommand, PublishCommand, TrainCommand, EvaluateCommand,
    BenchCommand, ConvertCommand, DemoCommand,
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
    try:
        return args.command.run(args)
    except (FercleanError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"ferclean {args.command.name}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
