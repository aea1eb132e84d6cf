"""Cleaning Parquet shards on Dask agrees with the in-memory clean, and restores exactly.

One LocalCluster of two workers (threads: the tests can watch what comes back; its
dashboard on a free port, so it never clashes with another cluster) is shared
by the module; the data is the 300-face demo (410 images) in shards of 100.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

pytest.importorskip("dask.distributed")
pytest.importorskip("pyarrow")

from distributed import Client, LocalCluster  # noqa: E402

import ferclean  # noqa: E402
from ferclean._outputs import MARKER, OutputExistsError, OutputPathError  # noqa: E402
from ferclean.cleaning import CleaningPlan, Rule  # noqa: E402
from ferclean.cli import main  # noqa: E402
from ferclean.dataset import FaceDataset  # noqa: E402
from ferclean.engines import dask_clean  # noqa: E402
from ferclean.engines.dask_clean import clean_shards  # noqa: E402
from ferclean.errors import BadInputError  # noqa: E402
from ferclean.findings import write_findings  # noqa: E402
from ferclean.io.parquet import dataset_table, parquet_shards, write_parquet  # noqa: E402

# Keep one per group (a test image if any), drop outliers, relabel conflicting copies in
# Training and PublicTest: removals, relabels, and a removal winning over a relabel.
PLAN = CleaningPlan("mixed", (
    Rule("exact_duplicate", "keep_one", keep="prefer_test"),
    Rule("outlier", "drop"),
    Rule("label_conflict", "relabel", splits=("Training", "PublicTest")),
))


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Source shards, their in-memory dataset, and its findings written and read back."""
    root = tmp_path_factory.mktemp("dask_clean")
    shards = write_parquet(ferclean.demo_dataset(n_faces=300), root / "shards",
                           shard_size=100)
    ds = ferclean.load(shards)
    audited = ferclean.audit(ds, only=PLAN.issues)
    audit_dir = write_findings(audited.findings, audited.summary, root / "audit")
    plan_file = PLAN.save(root / "plan.json")
    return {"root": root, "shards": shards, "ds": ds, "plan_file": plan_file,
            "audit": audit_dir, "findings": ferclean.read_findings(audit_dir)}


@pytest.fixture(scope="module")
def cleaned(data, client):
    out = data["root"] / "clean"
    manifest = clean_shards(data["shards"], PLAN, data["findings"], out, client=client)
    return out, manifest


def test_dask_clean_equals_the_in_memory_clean(data, cleaned):
    out, manifest = cleaned
    expected = ferclean.clean(data["ds"], PLAN, data["findings"])
    got = ferclean.load(out / "cleaned")
    assert got.equals(expected.cleaned, ids=True)
    assert np.array_equal(got.rows, expected.cleaned.rows)
    # the plan did something of each kind, so the agreement means something
    assert len(manifest.removed) and len(manifest.relabeled)
    assert manifest.info["relabel_counts"]["removed"] > 0
    assert manifest.removed.equals(expected.manifest.removed)
    assert manifest.relabeled.equals(expected.manifest.relabeled)
    info = {k: v for k, v in manifest.info.items() if k != "files"}
    assert info == expected.manifest.info
    assert json.loads((out / "manifest.json").read_text())["format"] == "ferclean-manifest"
    assert len(parquet_shards(out / "cleaned")) == len(parquet_shards(data["shards"]))
    assert ferclean.load(out / "removed").equals(expected.removed, ids=True)
    assert (out / MARKER).exists()


def test_restore_reverses_it_exactly(data, cleaned, capsys):
    out, _ = cleaned
    back = ferclean.restore_from(out)
    assert back.equals(data["ds"], ids=True) and np.array_equal(back.rows, data["ds"].rows)
    assert main(["restore", str(out), "--out", str(data["root"] / "back.npz")]) == 0
    assert "checksum verified" in capsys.readouterr().out
    assert ferclean.load(data["root"] / "back.npz").equals(data["ds"], ids=True)


def test_no_pixels_come_back_to_the_client(data, client, monkeypatch):
    returned = []
    real_run = dask_clean._run

    def run(tasks, client, bar):
        results = real_run(tasks, client, bar)
        returned.append(len(pickle.dumps(results)))
        return results

    monkeypatch.setattr(dask_clean, "_run", run)
    clean_shards(data["shards"], PLAN, data["findings"], data["root"] / "watched",
                 client=client)
    pixel_bytes = data["ds"].pixels.nbytes
    assert sum(returned) < pixel_bytes / 10  # metadata and hashes, no images


def test_cli_clean_on_dask_by_address(data, client, capsys):
    out = data["root"] / "cli"
    address = client.scheduler.address
    argv = ["clean", str(data["shards"]), "--plan", str(data["plan_file"]), "--findings",
            str(data["audit"]), "--out", str(out)]
    assert main([*argv, "--dask", address]) == 0
    printed = capsys.readouterr().out
    n_after = len(ferclean.load(out / "cleaned"))
    assert f"kept {n_after} of {len(data['ds'])} images" in printed
    assert ferclean.restore_from(out).equals(data["ds"], ids=True)
    assert main([*argv, "--dask", address]) == 1  # exists: refused without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--dask", address, "--overwrite"]) == 0
    assert main(["clean", str(data["shards"]), "--out", str(out) + "2", "--dask",
                 address]) == 1
    assert "--dask needs --findings" in capsys.readouterr().err


def test_unreachable_scheduler_is_one_clear_error(data, capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        assert main(["clean", str(data["shards"]), "--findings", str(data["audit"]), "--plan",
                     "dedup", "--out", str(data["root"] / "never"), "--dask",
                     "tcp://127.0.0.1:9"]) == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in capsys.readouterr().err
    assert not (data["root"] / "never").exists()


def test_the_output_guard_applies(data, client, cleaned):
    out, _ = cleaned
    with pytest.raises(OutputExistsError):
        clean_shards(data["shards"], PLAN, data["findings"], out, client=client)
    with pytest.raises(OutputPathError):
        clean_shards(data["shards"], PLAN, data["findings"], data["shards"] / "in",
                     client=client)
    with pytest.raises(OutputPathError):
        clean_shards(data["shards"], PLAN, data["findings"], data["audit"], client=client,
                     inputs=[data["audit"]], overwrite=True)


def test_bad_shards_raise_naming_file_and_row(data, client, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = data["ds"]
    findings = ferclean.read_findings(data["audit"])
    shards = write_parquet(ds, tmp_path / "shards", shard_size=100)
    pq.write_table(dataset_table(ds[:100]), shards / "part-00002.parquet")  # rows 0..99 again
    with pytest.raises(BadInputError, match=r"part-00002\.parquet: row 0: row 0 is not "
                       "unique"):
        clean_shards(shards, "raw", findings, tmp_path / "o", client=client)
    table = dataset_table(ds[200:300])
    labels = table.column("label").to_numpy().copy()
    labels[7] = 9
    pq.write_table(table.set_column(3, "label", pa.array(labels, pa.int8())),
                   shards / "part-00002.parquet")
    with pytest.raises(BadInputError, match=r"part-00002\.parquet: row 7: label 9 is not in"):
        clean_shards(shards, "raw", findings, tmp_path / "o", client=client)
    assert not (tmp_path / "o").exists()
    other = write_parquet(FaceDataset(ds.pixels, labels=ds.labels, splits=ds.splits,
                                      rows=ds.rows), tmp_path / "other", shard_size=100)
    with pytest.raises(ValueError, match="findings do not belong to this dataset"):
        clean_shards(other, PLAN, data["findings"], tmp_path / "o2", client=client)
