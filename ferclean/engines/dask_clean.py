"""Cleaning at scale: a plan and an audit's findings applied to Parquet shards on Dask.

:func:`clean_shards` writes what :func:`ferclean.clean` followed by
:meth:`~ferclean.cleaning.CleanResult.save` writes, for data held as Parquet shards
(:mod:`ferclean.io.parquet`), without gathering the pixels anywhere:

1. **Metadata** (``row``, ``image_id``, ``split``, ``label``: a few bytes an image) is read
   by the workers, shard by shard, and collected; it is all the decision needs.
2. **The decision** is the in-memory engine's: :func:`~ferclean.cleaning.select_cleaning`
   on that metadata decides which images go and which are relabeled, by the same code
   and with the same checks as :func:`~ferclean.cleaning.clean`.
3. **The shards** are cleaned by the workers, one task per shard: each reads its shard,
   writes the kept images (with their new labels) as ``cleaned/part-NNNNN.parquet``,
   the removed ones as a shard of ``removed/``, and sends back only the removed images'
   SHA-256 hashes.
4. **The manifest** is built from the decision, those hashes and the checksums before and
   after (:func:`~ferclean.io.parquet.parquet_checksum` run on a worker: the checksum is
   one SHA-256 over the images in order, so it is one sequential pass over the pixels,
   on one worker, alongside the cleaning).

The output folder (``cleaned/``, ``removed/``, ``manifest.json``) goes through the output
guard like every output, and :func:`ferclean.restore_from` (``ferclean restore``) reads
it back to the original, row for row. The workers must see the same file system as the
client (the source shards and ``out``): a laptop's ``LocalCluster``, or a cluster with a
shared disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._outputs import check_output, output_dir, source_inputs
from ferclean._progress import Progress
from ferclean.cleaning.apply import manifest_info, metadata_only, select_cleaning
from ferclean.cleaning.manifest import Manifest, pixel_sha256
from ferclean.cleaning.outputs import CLEAN_FILES
from ferclean.cleaning.plan import CleaningPlan
from ferclean.dataset import IMAGE_SIZE, SPLITS, FaceDataset
from ferclean.errors import BadInputError
from ferclean.findings import AuditResult
from ferclean.io.parquet import (
    PIXELS_WIDTH,
    _arrow,
    _canonical,
    _pixels_into,
    dataset_table,
    parquet_checksum,
    parquet_shards,
    shard_name,
    shard_sizes,
    validate_parquet_table,
    write_parquet_file,
    write_shards_description,
)

__all__ = ["CLEANED_SHARDS", "REMOVED_SHARDS", "clean_shards"]

#: The folders of a Dask clean output: the kept images and the removed ones, as shards.
CLEANED_SHARDS, REMOVED_SHARDS = "cleaned", "removed"
_METADATA_COLUMNS = ("row", "image_id", "split", "label")


def _dask():
    from ferclean.engines._cluster import require_dask

    return require_dask("cleaning on Dask")[0]


# ---------------------------------------------------------------------- worker tasks
@dataclass(frozen=True)
class _Failure:
    """A bad input a task met, sent back as data: BadInputError does not pickle."""

    source: str
    location: str | None
    reason: str


def _guarded(task: Callable[..., Any], *args: Any) -> Any:
    try:
        return task(*args)
    except BadInputError as exc:
        return _Failure(exc.source, exc.location, exc.reason)


def _shard_metadata(file: str) -> dict[str, np.ndarray]:
    """A shard's metadata columns (read alone, validated), as numpy arrays."""
    pa, pc, pq = _arrow()
    names = pq.read_schema(file).names
    columns = [*_METADATA_COLUMNS, *(["synthetic"] if "synthetic" in names else [])]
    table = validate_parquet_table(pq.read_table(file, columns=columns), file,
                                   columns=columns)
    split = table.column("split")
    if pa.types.is_dictionary(split.type):
        split = split.cast(pa.string())
    image_id = table.column("image_id").cast(pa.string())
    return {
        "rows": table.column("row").to_numpy(zero_copy_only=False).astype(np.int64),
        "ids": np.asarray(image_id.to_numpy(zero_copy_only=False), dtype=str).reshape(-1),
        "splits": pc.index_in(split, value_set=pa.array(SPLITS))
        .to_numpy(zero_copy_only=False).astype(np.int8),
        "labels": table.column("label").to_numpy(zero_copy_only=False).astype(np.int8),
        "synthetic": (table.column("synthetic").to_numpy(zero_copy_only=False).astype(bool)
                      if "synthetic" in columns else np.zeros(table.num_rows, bool)),
    }


def _clean_shard(file: str, keep: np.ndarray, labels: np.ndarray, cleaned_path: str,
                 removed_path: str | None, source: str) -> list[str]:
    """Write one shard's kept images (relabeled) and removed ones; return the removed
    images' SHA-256 hashes, in order."""
    pa, _, pq = _arrow()
    table = validate_parquet_table(pq.read_table(file), file)
    if table.num_rows != len(keep):
        raise BadInputError(file, None, f"holds {table.num_rows} images, {len(keep)} when "
                            "cleaning began: it changed meanwhile")
    table = _canonical(table, with_synthetic=False)  # synthetic data is never cleaned
    table = table.set_column(table.schema.get_field_index("label"), "label",
                             pa.array(labels, pa.int8()))
    write_parquet_file(table.filter(pa.array(keep)), cleaned_path, source=source)
    if removed_path is None:
        return []
    removed = table.filter(pa.array(~keep))
    write_parquet_file(removed, removed_path, source=source)
    pixels = np.empty((removed.num_rows, PIXELS_WIDTH), np.uint8)
    _pixels_into(removed.column("pixels"), pixels)
    return pixel_sha256(pixels)


# ---------------------------------------------------------------------- running
def _run(tasks: Sequence[Any], client: Any, bar: Progress | None) -> list[Any]:
    """Compute delayed tasks on ``client`` (or the default one, or dask's threads),
    counting finished ones on ``bar``; a task's bad input is raised here."""
    dask = _dask()
    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            client = None
    if client is None:
        results = list(dask.compute(*tasks))
        if bar is not None:
            bar.update(len(tasks))
    else:
        from distributed import as_completed

        futures = client.compute(list(tasks))
        for _ in as_completed(futures):
            if bar is not None:
                bar.update(1)
        results = client.gather(futures)
    for result in results:
        if isinstance(result, _Failure):
            raise BadInputError(result.source, result.location, result.reason)
    return results


def _first_duplicate(rows: np.ndarray) -> int | None:
    """Position of the first image whose ``row`` an earlier image has, or None."""
    order = np.argsort(rows, kind="stable")
    again = order[1:][rows[order[1:]] == rows[order[:-1]]]
    return int(again.min()) if len(again) else None


# ---------------------------------------------------------------------- the engine
def clean_shards(
    source_shards: str | os.PathLike,
    plan: CleaningPlan | str | os.PathLike,
    findings: AuditResult | pd.DataFrame,
    out: str | os.PathLike,
    *,
    client: Any = None,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    progress: bool = False,
) -> Manifest:
    """Apply a cleaning plan to Parquet shards through Dask; write a clean output folder.

    The decision is :func:`ferclean.clean`'s, made by the same code from the findings
    and the images' metadata; the pixels are read and written by the workers, shard by
    shard, and never gathered. ``load(out / "cleaned")`` equals
    ``ferclean.clean(load(source_shards), plan, findings).cleaned``, and
    :func:`ferclean.restore_from` of ``out`` gives back the source, row for row.

    Parameters
    ----------
    source_shards : path-like
        A folder of Parquet shards (or one ``.parquet`` file), as
        :func:`ferclean.io.parquet.write_parquet` writes them.
    plan : CleaningPlan, preset name or plan file
    findings : AuditResult or DataFrame
        An audit of this data (e.g. ``ferclean.read_findings(AUDIT)``); with an
        ``AuditResult`` every issue the plan acts on must have been audited, with the
        settings the plan requires.
    out : path-like
        The output folder: ``cleaned/`` (one shard per source shard, the kept images),
        ``removed/`` (the removed images, as shards, in source order) and
        ``manifest.json`` (the format of :class:`~ferclean.cleaning.Manifest`). Never an
        input; an existing one is replaced only with ``overwrite=True`` and only if
        ferclean wrote it.
    client : distributed.Client, default=None
        Where to run; ``None``: the default client if one is set, else dask's local
        threads.
    overwrite : bool, default=False
    inputs : paths, default=()
        The command's other inputs (the findings folder, a plan file), which ``out`` may
        not replace.
    progress : bool, default=False
        Count the shards done on stderr.

    Returns
    -------
    Manifest
        What was removed and relabeled (as written to ``out/manifest.json``).

    Raises
    ------
    BadInputError
        A bad shard or row (naming the file and the row), a ``row`` met twice.
    ValueError
        Findings of other data, or audited otherwise than the plan requires.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> import ferclean
    >>> from ferclean.io.parquet import write_parquet
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> shards = write_parquet(ferclean.demo_dataset(n_faces=300), d / "shards",
    ...                        shard_size=100)
    >>> found = ferclean.audit(ferclean.load(shards), only=["exact_duplicate"])
    >>> manifest = clean_shards(shards, "dedup", found, d / "clean")
    >>> ferclean.restore_from(d / "clean").equals(ferclean.load(shards), ids=True)
    True
    """
    _dask()
    _arrow()
    source = Path(source_shards)
    out = Path(out)
    plan = CleaningPlan.resolve(plan)
    inputs = (str(source), *source_inputs(*inputs))
    check_output(out, folder=True, inputs=inputs, overwrite=overwrite,
                 known=CLEAN_FILES)  # before any work: a refused output costs no wait
    files = [str(f.resolve()) for f in parquet_shards(source)]
    sizes = shard_sizes(source)
    dask = _dask()
    task = dask.delayed(_guarded, pure=False)
    # a step per shard read, per shard cleaned, and the checksum of the source
    with Progress(2 * len(files) + 1, f"clean {source.name}", enabled=progress) as bar:
        metadata = _run([task(_shard_metadata, f) for f in files], client, bar)
        rows = np.concatenate([m["rows"] for m in metadata])
        twice = _first_duplicate(rows)
        if twice is not None:
            shard = int(np.searchsorted(np.cumsum(sizes), twice, side="right"))
            raise BadInputError(files[shard], f"row {twice - sum(sizes[:shard])}",
                                f"row {rows[twice]} is not unique (an earlier image has "
                                "the same row)")
        meta = metadata_only(*(np.concatenate([m[k] for m in metadata])
                               for k in ("labels", "splits", "ids", "rows")),
                             source=str(source),
                             synthetic=np.concatenate([m["synthetic"] for m in metadata]))
        selection = select_cleaning(meta, plan, findings)
        with output_dir(out, what="ferclean clean output", inputs=inputs,
                        overwrite=overwrite, known=CLEAN_FILES) as tmp:
            manifest = _write(tmp.resolve(), files, sizes, meta, selection, client, bar)
    return manifest


def _write(tmp: Path, files: list[str], sizes: list[int], meta, selection, client,
           bar: Progress) -> Manifest:
    """Clean every shard into ``tmp`` and write the manifest; returns it."""
    dask = _dask()
    task = dask.delayed(_guarded, pure=False)
    cleaned_dir, removed_dir = tmp / CLEANED_SHARDS, tmp / REMOVED_SHARDS
    cleaned_dir.mkdir()
    removed_dir.mkdir()
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    tasks, n_removed_shards = [], 0
    for k, file in enumerate(files):
        keep = selection.keep[starts[k]:starts[k + 1]]
        removed_path = None
        if not keep.all():
            removed_path = str(removed_dir / shard_name(n_removed_shards))
            n_removed_shards += 1
        tasks.append(task(_clean_shard, file, keep, selection.labels[starts[k]:starts[k + 1]],
                          str(cleaned_dir / shard_name(k)), removed_path, meta.source))
    # the checksum of the source runs on a worker alongside the cleaning
    *hashes, checksum_before = _run([*tasks, task(parquet_checksum, meta.source)], client,
                                    bar)
    n_after = int(selection.keep.sum())
    write_shards_description(cleaned_dir, n_images=n_after, n_shards=len(files),
                             shard_size=max(sizes, default=0), source=meta.source)
    if n_removed_shards == 0:  # a folder of shards holds at least one, empty if need be
        nothing = FaceDataset(np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
        write_parquet_file(dataset_table(nothing), removed_dir / shard_name(0),
                           source=meta.source)
        n_removed_shards = 1
    write_shards_description(removed_dir, n_images=len(selection.removed),
                             n_shards=n_removed_shards, shard_size=max(sizes, default=0),
                             source=meta.source)
    (checksum_after,) = _run([task(parquet_checksum, str(cleaned_dir))], client, None)
    table = selection.removed.assign(
        pixel_sha256=np.asarray([h for part in hashes for h in part], dtype=object))
    info = manifest_info(meta, selection, checksum_before=checksum_before,
                         checksum_after=checksum_after)
    info["files"] = {"cleaned": CLEANED_SHARDS, "format": "parquet",
                     "removed": REMOVED_SHARDS, "removed_format": "parquet"}
    manifest = Manifest(table, info, selection.relabeled)
    (tmp / "manifest.json").write_text(manifest.to_json())
    return manifest
