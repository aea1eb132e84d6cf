"""The audit on Dask gives the in-memory engine's findings, row for row.

The demo (410 images) is written as Parquet, once as one shard and once as five, and
audited with a 2-worker LocalCluster (one per module) with every auditor; the findings
tables must equal the in-memory ones (``pandas.testing.assert_frame_equal``) and the
summaries agree on every field both have. Where the engine samples (the outliers' face
model fitted on fewer images than the dataset holds) the agreement it promises is tested
instead. The real FER-2013 version is in tests/test_realdata.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("dask.distributed")
pytest.importorskip("pyarrow")

from distributed import Client, LocalCluster  # noqa: E402

import ferclean  # noqa: E402
from ferclean.auditors.context import SuppliedContext  # noqa: E402
from ferclean.cli import main  # noqa: E402
from ferclean.demo import make_demo  # noqa: E402
from ferclean.engines import _cluster  # noqa: E402
from ferclean.errors import BadInputError, FercleanError  # noqa: E402
from ferclean.findings import read_findings  # noqa: E402
from ferclean.io.parquet import MissingDependencyError, dataset_table, write_parquet  # noqa: E402

EXACT_COLUMNS = ["row", "image_id", "split", "label", "issue", "group", "kind",
                 "related_row", "suggested_label", "signal", "probabilities", "detail"]


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The 300-face demo as one shard and as five (97 images each, the last 22)."""
    demo = make_demo(n_faces=300)
    root = tmp_path_factory.mktemp("dask_audit")
    one = write_parquet(demo.dataset, root / "one")
    many = write_parquet(demo.dataset, root / "many", shard_size=97)
    # the in-memory engine on the same Parquet data
    memory = ferclean.audit(ferclean.load(many))
    return {"demo": demo, "one": one, "many": many, "memory": memory, "root": root}


@pytest.fixture(scope="module")
def on_dask(client, data):
    return {name: ferclean.audit(data[name], engine="dask", client=client)
            for name in ("one", "many")}


def assert_same_findings(got: pd.DataFrame, want: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, want)
    pd.testing.assert_frame_equal(got[EXACT_COLUMNS], want[EXACT_COLUMNS], check_exact=True)


# --------------------------------------------------------------------------- same answers
@pytest.mark.parametrize("shards", ["one", "many"])
def test_findings_equal_the_in_memory_ones_row_for_row(on_dask, data, shards):
    result, memory = on_dask[shards], data["memory"]
    assert set(memory.findings["issue"]) == {
        "exact_duplicate", "near_duplicate", "label_conflict", "label_issue",
        "cross_split_leak", "outlier", "class_imbalance"}  # every auditor finds something
    assert_same_findings(result.findings, memory.findings)


@pytest.mark.parametrize("shards", ["one", "many"])
def test_summaries_agree_on_every_shared_field(on_dask, data, shards):
    got, want = on_dask[shards].summary, data["memory"].summary
    assert set(want) <= set(got)
    for key in want:
        if key == "source":  # each names the data it audited
            assert got[key] == str(data[shards])
        else:
            assert got[key] == want[key], key
    engine = got["engine"]
    assert engine["name"] == "dask" and engine["partitions"] == (1 if shards == "one" else 5)
    assert engine["outlier_sample_is_all"] is True
    # only the images the findings involve came back, not all of them
    assert engine["images_returned"] < got["n_images"]


def test_written_files_read_back_as_the_in_memory_audit(on_dask, data, tmp_path):
    back = read_findings(on_dask["many"].save(tmp_path / "audit"))
    assert_same_findings(back.findings, data["memory"].findings)
    assert back.summary["issues"] == data["memory"].summary["issues"]


def test_label_issues_from_probabilities_and_a_contamination_cut_match(client, data):
    """With pred_probs the metadata of every image comes back (they are matched by id);
    the model's findings are the in-memory ones. With contamination the outliers' cut is
    one image's own score: a partition must score it exactly as the whole array does, or
    that image would be flagged on one engine only."""
    n = len(data["demo"].dataset)
    probs = np.random.default_rng(3).dirichlet(np.ones(7) * 0.3, size=n)
    params = {"label_issue": {"pred_probs": probs, "duplicates": "exact"},
              "outlier": {"contamination": 0.07}}
    only = ["label_issue", "outlier"]
    memory = ferclean.audit(ferclean.load(data["many"]), only=only, params=params)
    result = ferclean.audit(data["many"], engine="dask", client=client, only=only,
                            params=params)
    assert {"model", "copies"} <= set(memory.findings["signal"])
    assert len(memory.of("outlier")) == int(np.ceil(0.07 * n))  # the next image is the cut
    assert_same_findings(result.findings, memory.findings)
    assert result.summary["issues"] == memory.summary["issues"]
    assert result.summary["engine"]["images_returned"] == n


def test_a_smaller_outlier_sample_still_finds_the_planted_non_faces(client, data):
    """Fitted on 200 of 410 images the model is the sample's, so the flags are not the
    in-memory ones exactly; promised: the planted non-faces are found as well, and the
    two engines flag mostly the same images."""
    result = ferclean.audit(data["many"], engine="dask", client=client, only=["outlier"],
                            outlier_sample=200)
    assert result.summary["engine"]["outlier_sample"] == 200
    assert result.summary["engine"]["outlier_sample_is_all"] is False
    flagged = set(result.findings["row"])
    memory = set(data["memory"].of("outlier")["row"])
    planted = data["demo"].truth.non_face_rows()
    assert len(flagged & planted) / len(planted) >= 0.9
    assert len(flagged & memory) / len(flagged | memory) >= 0.7


def test_partitions_pack_row_groups_and_cut_large_ones(data, tmp_path):
    import pyarrow.parquet as pq

    from ferclean.engines.dask import _pieces

    file = tmp_path / "groups.parquet"
    table = dataset_table(data["demo"].dataset[:230])
    pq.write_table(table, file, row_group_size=50)  # groups of 50, 50, 50, 50, 30
    assert [(p.row_groups, p.skip, p.n) for p in _pieces(file)] == [
        ((0,), 0, 50), ((1,), 0, 50), ((2,), 0, 50), ((3,), 0, 50), ((4,), 0, 30)]
    assert [(p.row_groups, p.n) for p in _pieces(file, 120)] == [
        ((0, 1), 100), ((2, 3), 100), ((4,), 30)]
    cut = _pieces(file, 20)
    assert [(p.row_groups, p.skip, p.n) for p in cut[:3]] == [
        ((0,), 0, 20), ((0,), 20, 20), ((0,), 40, 10)]
    assert [p.start for p in cut] == np.cumsum([0] + [p.n for p in cut[:-1]]).tolist()
    assert sum(p.n for p in cut) == 230


def test_partition_size_does_not_change_the_findings(client, data):
    """One shard cut into seven partitions of at most 64 images."""
    only = ["exact_duplicate", "label_conflict", "outlier", "class_imbalance"]
    params = {"label_conflict": {"duplicates": "exact"}}
    result = ferclean.audit(data["one"], engine="dask", client=client, only=only,
                            params=params, partition_size=64)
    assert result.summary["engine"]["partitions"] == 7
    memory = ferclean.audit(ferclean.load(data["one"]), only=only, params=params)
    assert_same_findings(result.findings, memory.findings)


# --------------------------------------------------------------------------- bad input
def test_a_bad_row_names_its_shard_and_row(client, data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = write_parquet(data["demo"].dataset[:60], tmp_path / "bad", shard_size=30)
    part = shards / "part-00001.parquet"
    table = pq.read_table(part)
    labels = table.column("label").to_numpy().copy()
    labels[4] = 9
    broken = table.set_column(3, "label", pa.array(labels, pa.int8()))
    pq.write_table(broken.replace_schema_metadata(table.schema.metadata), part)
    with pytest.raises(BadInputError, match=r"part-00001\.parquet: row 4: label 9 is not in"):
        ferclean.audit(shards, engine="dask", client=client, only=["class_imbalance"])


def test_a_row_repeated_across_shards_is_refused(client, data, tmp_path):
    import pyarrow.parquet as pq

    ds = data["demo"].dataset[:40]
    shards = write_parquet(ds, tmp_path / "twice", shard_size=20)
    part = shards / "part-00001.parquet"
    rows = ds.rows.copy()
    rows[25] = rows[3]  # the second shard repeats a row of the first
    table = dataset_table(ferclean.FaceDataset(ds.pixels[20:], ds.labels[20:], ds.splits[20:],
                                               ds.ids[20:], rows[20:]))
    pq.write_table(table.replace_schema_metadata(pq.read_schema(part).metadata), part)
    with pytest.raises(BadInputError, match=rf"part-00001\.parquet: row 5: row {rows[3]} is "
                                            "not unique"):
        ferclean.audit(shards, engine="dask", client=client, only=["class_imbalance"])


def test_what_the_dask_engine_does_not_take(client, data):
    with pytest.raises(TypeError, match="write_parquet"):
        ferclean.audit(data["demo"].dataset, engine="dask", client=client)
    with pytest.raises(ValueError, match="mean_iqr"):
        ferclean.audit(data["many"], engine="dask", client=client,
                       params={"outlier": {"method": "mean_iqr"}})
    with pytest.raises(ValueError, match="outlier_sample"):
        ferclean.audit(data["many"], engine="dask", client=client, outlier_sample=0)
    with pytest.raises(ValueError, match="options of engine='dask'"):
        ferclean.audit(data["demo"].dataset, outlier_sample=100)


def test_without_the_extra_the_error_names_it(data, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "distributed", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'ferclean\[dask\]'"):
        ferclean.audit(data["many"], engine="dask")


def test_progress_and_an_intermediate_the_engine_did_not_supply(client, data, capsys):
    audit = ferclean.Audit(only=["class_imbalance"], engine="dask", client=client)
    audit.run(data["many"], progress=True)
    err = capsys.readouterr().err
    assert "audit on dask: hashing" in err and "audit on dask: looking up images" in err
    context = audit.context_
    assert isinstance(context, SuppliedContext)
    with pytest.raises(ValueError, match="did not supply the intermediate 'near_pairs'"):
        context.dependency("near_duplicate")
    with pytest.raises(ValueError, match="metadata only"):
        _ = context.dataset.pixels


# --------------------------------------------------------------------------- the CLI
def test_cli_audits_shards_on_a_running_scheduler(client, data, tmp_path, capsys):
    out = tmp_path / "audit"
    only = "exact_duplicate,class_imbalance"
    assert main(["audit", str(data["many"]), "--dask", client.scheduler.address, "--only",
                 only, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "audited" in printed and "--html" not in printed  # no images to show here
    memory = data["memory"].findings
    want = memory[memory["issue"].isin(only.split(","))].reset_index(drop=True)
    assert_same_findings(read_findings(out).findings, want)


def test_cli_unreachable_scheduler_is_one_line(data, tmp_path, capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}):
        code = main(["audit", str(data["many"]), "--dask", "tcp://127.0.0.1:1", "--out",
                     str(tmp_path / "never")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.startswith("ferclean audit: error: cannot reach the Dask scheduler at "
                          "tcp://127.0.0.1:1: ")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_cli_refuses_what_dask_cannot_do(data, tmp_path, capsys):
    base = ["audit", "--out", str(tmp_path / "x"), "--dask", "local"]
    assert main([*base, "--demo"]) == 1
    assert "--dask audits Parquet data: give PATH" in capsys.readouterr().err
    assert main([*base, str(data["many"]), "--html", str(tmp_path / "r.html")]) == 1
    assert "--dask does not take --html" in capsys.readouterr().err
    assert main(["audit", str(data["many"]), "--outlier-sample", "5", "--out",
                 str(tmp_path / "y")]) == 1
    assert "--outlier-sample is an option of --dask" in capsys.readouterr().err


def test_connect_specs():
    assert _cluster.local_cluster_size(3) == {
        "n_workers": 3, "threads_per_worker": 1, "processes": True, "memory_limit": "auto",
        "dashboard_address": None}
    with pytest.raises(FercleanError, match="not an address"):
        _cluster.connect("two words")
    with pytest.raises(FercleanError, match="needs 'local' or a scheduler address"):
        _cluster.connect("")
