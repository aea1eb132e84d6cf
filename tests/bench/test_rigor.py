"""Profiles and recipes of the suite, and the re-derivation of stored results."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ferclean.bench import PROFILES, VARIATIONS, Cell
from ferclean.bench.profiles import CORE_SEEDS, LABEL_VARIATIONS, PROTOCOLS, SAMPLINGS
from ferclean.bench.rederive import _with_bounds, rederive

ROOT = Path(__file__).resolve().parents[2]
FULL = ROOT / "benchmarks" / "results" / "full"
NETS = {("vgg", "vgg"), ("cnn_lstm", "study"), ("cnn_lstm", "study-augmented"),
        ("cnn_mha", "study")}


def test_full_profile_covers_the_grid_vgg_first_with_five_seeds_where_it_concludes():
    full = PROFILES["full"]
    cells = {(c.protocol, c.variation, c.sampling, c.model, c.recipe) for c in full.cells}
    grid = {(p, v, s, m, r) for p in PROTOCOLS for v in VARIATIONS for s in SAMPLINGS
            for m, r in NETS
            if not (p == "seed-replica" and v in LABEL_VARIATIONS)}  # Training-only folds
    assert cells == grid and len(full.cells) == len(grid)
    first = full.cells[:len(VARIATIONS)]  # A against every cleaning, the reference net
    assert {(c.protocol, c.sampling, c.model, c.recipe) for c in first} == {
        ("honest", "none", "vgg", "vgg")}
    assert [c.variation for c in first] == list(VARIATIONS)
    assert all(len(full.seeds_of(c)) >= 5 for c in first) and len(CORE_SEEDS) >= 5
    # run seed by seed inside a block: a run cut short keeps pairs of every variation
    order = full.runs()
    assert [(c.variation, s) for c, s in order[:len(VARIATIONS) + 1]] == (
        [(v, 0) for v in VARIATIONS] + [("A", 1)])
    assert len(order) == len(set(order)) == sum(len(full.seeds_of(c)) for c in full.cells)
    assert full.to_dict()["n_runs"] == len(order)


def test_profiles_name_registered_models_and_recipes():
    from ferclean.learning import TRAINING_PRESETS
    from ferclean.learning.models import MODELS

    for profile in PROFILES.values():
        for cell in profile.cells:
            assert cell.model in MODELS and cell.recipe in TRAINING_PRESETS, cell


def test_stored_runs_keep_their_keys():
    stored = json.loads((FULL / "results.json").read_text())
    keys = {c.key for c in PROFILES["full"].cells}
    assert set(stored["profile"]["cells"]) <= keys  # old cells: the study's recipe
    for key, run in stored["runs"].items():
        assert f"{Cell.from_run(run).key}|{run['seed']}" == key
    assert Cell("honest", "A", "none", "vgg", "vgg").key == "honest|A|none|vgg|vgg"


def test_the_study_recipe_trains_as_the_profiles_did_before_recipes():
    from ferclean.bench.suite import train_config
    from ferclean.learning import TrainConfig, training_preset

    weights = {0: 1.0, 1: 9.0}
    for name in ("full", "quick", "smoke"):
        profile = PROFILES[name]
        cell = Cell("honest", "A", "class_weights", "cnn_lstm")
        before = TrainConfig(model="cnn_lstm", model_kwargs=profile.model_kwargs.get(
            "cnn_lstm", {}), epochs=profile.epochs, batch_size=profile.batch_size,
            learning_rate=profile.learning_rate, seed=2, class_weight=weights,
            drop_remainder=True)
        assert train_config(cell, profile, 2, weights) == before
    vgg = train_config(Cell("honest", "A", "none", "vgg", "vgg"), PROFILES["full"], 3)
    assert vgg == training_preset("vgg", seed=3, drop_remainder=True)
    for cell in PROFILES["quick"].cells:  # the quick profile stays short
        assert train_config(cell, PROFILES["quick"], 0).epochs <= 6
    # a profile may shorten another recipe; the profile's own epochs are the study's
    short = dataclasses.replace(PROFILES["quick"],
                                recipe_overrides={"study-augmented": {"epochs": 4}})
    augmented = train_config(Cell("honest", "A", "none", "cnn_lstm", "study-augmented"),
                             short, 1)
    assert augmented == training_preset("study-augmented", epochs=4, seed=1,
                                        model_kwargs={"bn_momentum": 0.9},
                                        drop_remainder=True)


def test_quick_profile_keeps_its_cost():
    quick = PROFILES["quick"]
    runs = quick.runs()
    assert quick.train_subset == 1500 and quick.eval_subset == 600
    # measured here (docs/benchmarks.md): a run of the study's recipe takes ~100-160 s
    assert len(runs) <= 10 and {s for _, s in runs} == {0, 1, 2}
    assert {c.protocol for c in quick.cells} == {"honest", "seed-replica"}


@pytest.fixture(scope="module")
def rederived(tmp_path_factory):
    """The committed full-profile runs, re-derived once (without the dataset)."""
    folder = tmp_path_factory.mktemp("full")
    shutil.copy(FULL / "results.json", folder / "results.json")
    return folder, rederive(folder)


def test_rederive_flags_the_collapsed_run_and_lists_what_to_rerun(rederived):
    stored_full, facts = rederived
    before = (FULL / "results.json").read_bytes()
    assert (stored_full / "results.json").read_bytes() == before  # never rewritten
    assert list(facts["collapsed_runs"]) == ["honest|A|none|cnn_mha|0"]
    summary = pd.DataFrame(facts["summary"]).set_index(
        ["protocol", "variation", "sampling", "model", "eval"])
    mha = summary.loc[("honest", "A", "none", "cnn_mha", "PrivateTest")]
    runs = json.loads(before)["runs"]
    kept = [runs[f"honest|A|none|cnn_mha|{s}"]["metrics"]["PrivateTest"]["accuracy"]
            for s in (1, 2)]
    assert mha.seeds == 2 and mha.n_collapsed == 1
    assert mha.accuracy_mean == pytest.approx(np.mean(kept))  # the collapse left out
    # Holm across the table; intervals from confusion matrices (no per-image data)
    tested = summary[summary.p_value.notna()]
    assert facts["statistics"]["holm_family"] == len(tested) > 10
    assert (tested.p_holm >= tested.p_value).all()
    assert set(tested.delta_ci_method) == {"confusion matrices"}
    every = " ".join(facts["rerun"]["every_cell"])
    assert "per-image predictions" in every and "history" in every and "5 seeds" in every
    reasons = {e["cell"]: " ".join(e["reasons"]) for e in facts["rerun"]["cells"]}
    assert "collapsed" in reasons["honest|A|none|cnn_mha"]
    assert all("de-leaked" in reasons[c] for c in reasons if c.startswith("honest"))
    assert not any("de-leaked" in reasons[c] for c in reasons if c.startswith("seed-"))
    assert facts["not_run"]["cells_without_runs"] == len(PROFILES["full"].cells) - len(
        reasons)
    text = (stored_full / "rederived.md").read_text()
    assert "† honest|A|none|cnn_mha|study" in text and "## Cells to re-run" in text


def test_committed_rederived_file_is_what_rederive_gives(rederived):
    """The committed re-derivation (made with the real data, for the set facts) holds the
    statistics rederive computes from results.json alone."""
    committed = json.loads((FULL / "rederived.json").read_text())
    fresh = rederived[1]
    columns = ["accuracy_mean", "accuracy_std", "accuracy_ci_low", "accuracy_ci_high",
               "delta_vs_A", "p_value", "p_holm", "delta_ci_low", "delta_ci_high", "seeds",
               "n_collapsed"]
    ours, theirs = pd.DataFrame(fresh["summary"]), pd.DataFrame(committed["summary"])
    pd.testing.assert_frame_equal(ours[columns], theirs[columns].astype(ours[columns].dtypes))
    assert committed["collapsed_runs"] == fresh["collapsed_runs"]
    single = committed["single_deleaked_set"]
    assert single["n"] == len(single["rows"]) == 2838  # leakage.json: 3,589 - 751
    # every cleaned Training is a subset of the raw one: its own set a superset
    sets = committed["variation_sets"]
    assert all(f["superset"] and f["n"] == single["n"] + f["extra"] for f in sets.values())
    assert [v for v, f in sets.items() if f["same"]] == ["A", "B"]


def test_rederive_from_the_command_line(tmp_path, capsys):
    from ferclean.cli import main

    runs = json.loads((FULL / "results.json").read_text())["runs"]
    few = {k: v for k, v in runs.items() if "|cnn_mha|" in k}
    (tmp_path / "results.json").write_text(json.dumps({"profile": {"name": "full"},
                                                       "runs": few}))
    assert main(["bench", "--rederive", str(tmp_path)]) == 0
    assert "Cells to re-run" in capsys.readouterr().out
    assert "honest|A|none|cnn_mha|0" in json.loads(
        (tmp_path / "rederived.json").read_text())["collapsed_runs"]
    assert main(["bench", "--rederive", str(tmp_path / "missing")]) != 0


def test_bounds_on_the_single_set_by_hand():
    # single set 8 images; B's own set 10 (2 more), A's is the single set
    facts = {"single": {"n": 8},
             "variations": {"A": {"n": 8, "same": True, "superset": True, "rebuilt": True},
                            "B": {"n": 10, "same": False, "superset": True,
                                  "rebuilt": True}}}

    def run(variation, right, n):
        confusion = [[right // 2, (n - right) // 2], [n - right - (n - right) // 2,
                                                      right - right // 2]]
        return {"protocol": "honest", "variation": variation, "sampling": "none",
                "model": "cnn_lstm", "seed": 0,
                "metrics": {"PrivateTest_deleaked": {"accuracy": right / n, "n": n,
                                                     "macro_f1": 0.5, "loss": 1.0,
                                                     "confusion": confusion}}}

    runs = {"a": run("A", 5, 8), "b": run("B", 6, 10)}
    from ferclean.bench import summarize_runs

    summary = _with_bounds(summarize_runs(runs), runs, facts).set_index("variation")
    # B: 6 of 10 right; on the 8 single images between 4/8 (both extra right) and 6/8
    assert (summary.loc["B", "single_low"], summary.loc["B", "single_high"]) == (0.5, 0.75)
    assert summary.loc["A", "single_low"] == summary.loc["A", "single_high"] == 5 / 8
    assert summary.loc["B", "delta_single_low"] == pytest.approx(0.5 - 5 / 8)
    assert summary.loc["B", "delta_single_high"] == pytest.approx(0.75 - 5 / 8)
    assert summary.loc["B", "same_images"] == 0

