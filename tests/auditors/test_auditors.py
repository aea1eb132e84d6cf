"""Auditors against the demo's planted ground truth, edge cases, and common checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import ferclean
from ferclean.auditors import (
    REGISTRY,
    AuditContext,
    Auditor,
    ClassImbalanceAuditor,
    CrossSplitLeakAuditor,
    ExactDuplicateAuditor,
    LabelConflictAuditor,
    get_auditor,
    register,
    unregister,
)
from ferclean.dataset import EMOTIONS, FaceDataset
from ferclean.demo import make_demo
from ferclean.findings import COLUMNS, concat_findings, make_findings, validate_findings


@pytest.fixture(scope="module")
def demo():
    return make_demo()


def found_groups(findings: pd.DataFrame) -> set[frozenset[int]]:
    return {frozenset(part.row.tolist()) for _, part in findings.groupby("group")}


def test_exact_duplicates_match_truth(demo):
    found = ExactDuplicateAuditor().audit(demo.dataset)
    assert found_groups(found) == set(demo.truth.exact_groups())
    assert (found.score == 1.0).all()
    # the first row of each group is kept, the others are removable
    for _, part in found.groupby("group"):
        first = part.row.min()
        assert not part[part.row == first].detail.iloc[0].endswith("removable")
        assert part[part.row != first].detail.str.endswith("removable").all()


def test_conflicts_match_truth_with_label_multiset(demo):
    found = LabelConflictAuditor(duplicates="exact").audit(demo.dataset)
    assert found_groups(found) == set(demo.truth.conflict_groups("exact"))
    # exact and near by default; the planted flips need mirrored copies searched for
    default = ferclean.audit(demo.dataset, only=["label_conflict"],
                             params={"near_duplicate": {"mirror": True}}).findings
    assert found_groups(default[default.kind == "exact"]) == found_groups(found)
    near = found_groups(default[default.kind != "exact"])
    assert all(any(g <= h for h in near) for g in demo.truth.conflict_groups("near"))
    for _, part in found.groupby("group"):
        counts = part.label.value_counts()
        expected = ", ".join(f"{EMOTIONS[k]} x{v}" for k, v in sorted(counts.items()))
        assert part.detail.iloc[0].endswith("labels " + expected)


def test_leaks_match_truth_and_pairs(demo):
    auditor = CrossSplitLeakAuditor(duplicates="exact")
    found = auditor.audit(demo.dataset)
    assert found_groups(found) == set(demo.truth.leak_groups("exact"))
    pairs = auditor.pairs_.set_index("pair")
    for pair, row in pairs.iterrows():
        a, b = pair.split("-")
        n = sum(1 for g in demo.truth.leak_groups("exact")
                if {a, b} <= set(demo.dataset.split_names[sorted(g)]))
        assert row.groups == n
    assert pairs.groups.sum() >= len(demo.truth.leak_groups("exact"))


def test_imbalance_table_matches_counts(demo):
    auditor = ClassImbalanceAuditor()
    found = auditor.audit(demo.dataset)
    table = auditor.table_
    train = table[table.split == "Training"].set_index("emotion")
    assert train["count"].to_dict() == demo.dataset.label_counts("Training")
    assert train.loc["disgust", "under_represented"]
    assert not train.loc["happy", "under_represented"]
    ratio = train["count"].max() / train["count"].min()
    assert auditor.imbalance_ratio_["Training"] == pytest.approx(ratio)
    flagged = found[found.split == "Training"]
    assert set(flagged.label) == set(train.index.get_indexer(
        train.index[train.under_represented]))


def test_runner_shares_the_context_and_matches_individual_runs(demo):
    result = ferclean.audit(demo.dataset)
    ctx = AuditContext(demo.dataset)
    for name in ("exact_duplicate", "label_conflict", "cross_split_leak"):
        alone = get_auditor(name).audit(demo.dataset, ctx)
        pd.testing.assert_frame_equal(
            result.of(name).sort_values("row").reset_index(drop=True),
            alone.sort_values("row").reset_index(drop=True))
    issues = result.summary["issues"]
    assert issues["exact_duplicate"]["groups"] == len(demo.truth.exact_groups())
    assert issues["exact_duplicate"]["images"] == sum(map(len, demo.truth.exact_groups()))
    assert issues["exact_duplicate"]["removable"] == sum(
        len(g) - 1 for g in demo.truth.exact_groups())


def test_only_skip_and_specs(demo):
    result = ferclean.audit(demo.dataset, only=["label_conflict"])
    assert set(result.findings.issue) == {"label_conflict"}
    result = ferclean.audit(demo.dataset, skip=["class_imbalance", "outlier"])
    assert "class_imbalance" not in set(result.findings.issue)
    with pytest.raises(ValueError, match="unknown auditor 'nope' in only=; available: "):
        ferclean.audit(demo.dataset, only=["nope"])
    result = ferclean.audit(demo.dataset, [{"class_imbalance": {"threshold": 0.9}}])
    assert result.auditors[0].threshold == 0.9


def _tiny(pixels, labels=None, splits=None) -> FaceDataset:
    return FaceDataset(np.asarray(pixels, np.uint8), labels=labels, splits=splits)


EDGE_CASES = {
    "empty": lambda: _tiny(np.zeros((0, 48, 48))),
    "single": lambda: _tiny(np.full((1, 48, 48), 7), labels=[3]),
    "all identical": lambda: _tiny(np.full((5, 48, 48), 9), labels=[3, 3, 3, 4, 3],
                                   splits=[0, 0, 0, 1, 2]),
    "one split": lambda: make_demo(n_faces=300).dataset.split("Training"),
    "no labels": lambda: _tiny(np.random.default_rng(0).integers(0, 255, (6, 48, 48))),
}


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_common_checks(name, case):
    """Every registered auditor: schema on odd data, clone, determinism."""
    ds = EDGE_CASES[case]()
    auditor = get_auditor(name)
    first = auditor.audit(ds)
    assert list(first.columns) == list(COLUMNS)
    pd.testing.assert_frame_equal(validate_findings(first), first)  # already valid
    assert set(first.issue) <= {name}
    twin = clone(auditor)
    assert twin.get_params() == auditor.get_params()
    pd.testing.assert_frame_equal(first, twin.audit(ds))
    assert repr(auditor).startswith(type(auditor).__name__)


def test_all_identical_images_form_one_group_with_conflict_and_leak():
    ds = EDGE_CASES["all identical"]()
    result = ferclean.audit(ds, only=["exact_duplicate", "label_conflict", "cross_split_leak"])
    issues = result.summary["issues"]
    assert issues["exact_duplicate"] == {**issues["exact_duplicate"], "groups": 1,
                                         "images": 5, "removable": 4}
    assert issues["label_conflict"]["groups"] == 1
    assert issues["cross_split_leak"]["groups"] == 1


def test_one_split_has_no_leaks_and_unlabeled_has_no_conflicts():
    assert CrossSplitLeakAuditor().audit(EDGE_CASES["one split"]()).empty
    px = np.zeros((3, 48, 48), np.uint8)
    assert LabelConflictAuditor().audit(_tiny(px)).empty  # no labels: nothing to conflict
    assert len(ExactDuplicateAuditor().audit(_tiny(px))) == 3


def test_bad_parameters_and_inputs():
    with pytest.raises(TypeError, match="must be a ferclean.FaceDataset"):
        ExactDuplicateAuditor().audit(np.zeros((2, 48, 48)))
    with pytest.raises(ValueError, match="threshold must be in"):
        ClassImbalanceAuditor(threshold=3).audit(EDGE_CASES["single"]())
    with pytest.raises(ValueError, match="duplicates must be one of"):
        LabelConflictAuditor(duplicates="fuzzy").audit(EDGE_CASES["single"]())


def test_findings_contract():
    ds = EDGE_CASES["all identical"]()
    with pytest.raises(ValueError, match="unknown issue"):
        validate_findings(make_findings(ds, [0], "blurry"), issues=REGISTRY)
    with pytest.raises(ValueError, match="unknown kind"):
        make_findings(ds, [0], "exact_duplicate", kind="fuzzy")
    with pytest.raises(ValueError, match=r"scores must lie in \[0, 1\]"):
        make_findings(ds, [0], "outlier", score=1.5)
    table = concat_findings([make_findings(ds, [1], "outlier"),
                             make_findings(ds, [0, 2], "exact_duplicate", group=0)],
                            order=list(REGISTRY))
    assert table.issue.tolist() == ["exact_duplicate", "exact_duplicate", "outlier"]


# Non-default settings per built-in auditor, each chosen so that it changes the findings on
# the demo data; the test below fails when a registered auditor has none.
NON_DEFAULT = {
    "exact_duplicate": {},  # no parameters
    "near_duplicate": {"similarity": 0.999},
    "label_conflict": {"duplicates": "exact"},
    "label_issue": {"copies": False},
    "cross_split_leak": {"duplicates": "exact"},
    "outlier": {"method": "mean_iqr"},
    "class_imbalance": {"threshold": 0.9},
}


@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_settings_take_effect_alone_and_as_a_dependency(demo, name):
    """Each auditor honours non-default settings when run alone, and every auditor that
    requires it gets it computed with those settings, whatever --only says."""
    assert set(NON_DEFAULT) >= set(REGISTRY) - {"dark_image"}
    settings = NON_DEFAULT[name]
    alone = ferclean.audit(demo.dataset, only=[name], params={name: settings})
    assert alone.summary["settings"][name] == {**get_auditor(name).get_params(), **settings}
    if settings:
        default = ferclean.audit(demo.dataset, only=[name])
        assert not alone.findings.equals(default.findings)
    users = [user for user in REGISTRY if name in get_auditor(user).requires()]
    assert users or name != "near_duplicate"  # conflicts and leaks need it by default
    for user in users:
        run = ferclean.Audit(only=[user], params={name: settings})
        with_setting = run.run(demo.dataset)
        assert run.context_.dependency(name).get_params() == alone.summary["settings"][name]
        assert with_setting.summary["settings"][name] == alone.summary["settings"][name]
        without = ferclean.audit(demo.dataset, only=[user])
        if user == "label_issue":  # the demo's minority copies are the same either way:
            # the vote's groups show that the setting took effect
            voted = [a.vote_.group_of for a in (with_setting.auditors[0], without.auditors[0])]
            assert not np.array_equal(*voted), (user, name)
        else:
            assert not with_setting.findings.equals(without.findings), (user, name)
        # the dependency's result is the same whether it is reported or not
        both = ferclean.audit(demo.dataset, only=[user, name], params={name: settings})
        assert both.of(user).equals(with_setting.of(user))


class DarkImageAuditor(Auditor):
    """A user's own auditor, registered in the test as a notebook user would."""

    issue_name = "dark_image"
    title = "Dark images"
    description = "Images whose mean grey level is below a level."

    def __init__(self, *, level: float = 60.0):
        self.level = level

    def _audit(self, dataset, context):
        mean = context.mean_pixel
        index = np.flatnonzero(mean < self.level)
        return make_findings(dataset, index, self.issue_name,
                             score=1 - mean[index] / 255, detail="dark")


@pytest.fixture
def dark_auditor():
    register(DarkImageAuditor)
    yield DarkImageAuditor
    unregister("dark_image")


def test_a_users_auditor_reaches_audit_files_and_plans(tmp_path, demo, dark_auditor):
    from ferclean.cleaning import CleaningPlan, Rule

    result = ferclean.audit(demo.dataset, params={"dark_image": {"level": 80}})
    dark = result.of("dark_image")
    assert len(dark) and (demo.dataset.pixels[dark.row].mean(axis=(1, 2)) < 80).all()
    assert result.summary["issues"]["dark_image"]["images"] == len(dark)
    assert list(result.summary["issues"])[-1] == "dark_image"  # after the built-ins
    back = ferclean.read_findings(result.save(tmp_path / "audit"))
    assert back.of("dark_image").equals(dark)
    plan = CleaningPlan("no-dark", (Rule("dark_image", "drop_all"),))
    cleaned, manifest = ferclean.clean(demo.dataset, plan, back)
    assert set(manifest.removed.row) == set(dark.row)
    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (DarkImageAuditor,), {}))


def test_registry_rejects_bad_auditors():
    with pytest.raises(ValueError, match="lower-case identifier"):
        register(type("Bad", (Auditor,), {"issue_name": "Bad Name"}))
    with pytest.raises(ValueError, match="gallery must be"):
        register(type("Bad", (Auditor,), {"issue_name": "bad", "gallery": "wall"}))
    assert "bad" not in REGISTRY


def test_an_auditor_may_only_report_its_own_issue(demo):
    class Liar(DarkImageAuditor):
        issue_name = "liar"

        def _audit(self, dataset, context):
            return make_findings(dataset, [0], "outlier")

    with pytest.raises(ValueError, match="may only report 'liar'"):
        Liar().audit(demo.dataset)


def test_default_audit_finds_planted_near_leaks_typed_near(demo):
    """Near copies in other splits are leaks by default; exact counts stay as before."""
    result = ferclean.audit(demo.dataset, only=["cross_split_leak"])
    found = result.of("cross_split_leak")
    near = found_groups(found[found.kind == "near"])
    flips = {frozenset(g) for g in demo.truth.near_groups("flip")}
    planted = [g for g in demo.truth.leak_groups("near") if not any(g & f for f in flips)]
    assert planted and all(any(g <= h for h in near) for g in planted)
    entry = result.summary["issues"]["cross_split_leak"]
    assert entry["groups"] == len(demo.truth.leak_groups("exact")) and entry["near_groups"] > 0
