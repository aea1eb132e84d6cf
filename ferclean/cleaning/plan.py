"""Cleaning plans as data: rules per issue type, saved and loaded as JSON or YAML, and presets.

A :class:`CleaningPlan` is a list of :class:`Rule` s, each saying what to do with the
images one issue type flags (drop them all, keep one per group, drop those scoring above a
threshold, or relabel them to the label their findings suggest), optionally only in some
splits. Presets mirror the study's variations (``raw``, ``dedup``, ``no-conflicts``,
``no-outliers``, ``seed-final``) plus ferclean's ``strict``, which never touches the test
splits, and the label presets ``no-label-issues`` and ``relabel`` (Training only).

Precedence when rules meet on one image: removal wins over relabeling (a removed image
keeps its label in the manifest's removed table), and of two relabel rules suggesting
different labels the first in the plan wins.

Rules name issues by string and are checked against the auditor registry when the plan is
used (:meth:`CleaningPlan.validate`, called by :func:`~ferclean.cleaning.clean` and when a
plan file is read), not when a plan is built: a preset may name an issue whose auditor
registers later.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

from ferclean.dataset import SPLITS
from ferclean.findings import SIGNALS

__all__ = ["ACTIONS", "KEEP_RULES", "PRESETS", "RELABEL_SPLITS", "REMOVAL_ACTIONS",
           "CleaningPlan", "Rule"]

#: ``drop`` and ``drop_all`` are one action (``drop_all``, its first name, keeps old plan
#: files working).
ACTIONS: tuple[str, ...] = ("drop", "drop_all", "keep_one", "drop_above", "relabel")
#: The actions that remove images; ``relabel`` is the one that keeps them.
REMOVAL_ACTIONS: tuple[str, ...] = ("drop", "drop_all", "keep_one", "drop_above")
#: Where a ``relabel`` rule acts when it names no ``splits``: never a test split unless
#: the plan says so, so that test accuracies stay comparable with other work.
RELABEL_SPLITS: tuple[str, ...] = ("Training",)
#: Issues whose findings suggest labels, for auditors that do not declare
#: ``suggests_labels`` themselves.
_LABEL_ISSUES = ("label_conflict", "label_issue")
#: Values of a rule's ``kinds`` (the findings' ``kind`` column for grouped issues).
GROUP_KINDS: tuple[str, ...] = ("exact", "near", "mirror")
KEEP_RULES: tuple[str, ...] = ("first", "prefer_test", "prefer_training")
#: Values of a rule's ``signals`` (the findings' ``signal`` column for label findings).
LABEL_SIGNALS: tuple[str, ...] = tuple(s for s in SIGNALS if s)


@dataclass(frozen=True)
class Rule:
    """What to do with the images that one issue type flags.

    Parameters
    ----------
    issue : str
        An issue name (``exact_duplicate``, ``label_conflict``, ``outlier``, ...).
    action : {"drop", "drop_all", "keep_one", "drop_above", "relabel"}
        ``drop`` (also spelt ``drop_all``) removes every flagged image; ``keep_one`` keeps
        one image per group (grouped issues only) and removes the rest; ``drop_above``
        removes images whose score is at least ``threshold``; ``relabel`` keeps the
        images and gives each the label its finding suggests (``suggested_label``;
        findings without one, ``-1``, are left alone), for issues whose findings suggest
        labels (``label_issue``, ``label_conflict``).
    keep : {"first", "prefer_test", "prefer_training"}, default="first"
        For ``keep_one``: which image a group keeps: the first in input order, or the
        first in a test split (PublicTest/PrivateTest), or in Training, if any.
    threshold : float, default=None
        For ``drop_above`` (required) and ``relabel`` (optional: relabel only findings
        scoring at least this).
    splits : tuple of str, default=None
        Act only on images of these splits. ``None``: any split for the removing actions,
        ``("Training",)`` for ``relabel``, which changes a test split's labels only when
        its ``splits`` name it.
    kinds : tuple of str, default=None
        Act only on findings of these kinds (``"exact"``, ``"near"``, ``"mirror"``: the
        findings' ``kind`` column); ``None``: every finding of the issue. The study's
        presets act on exact groups only, as the study did.
    signals : tuple of str, default=None
        Act only on findings resting on these signals (``"model"``, ``"copies"``,
        ``"ferplus"``: the findings' ``signal`` column); ``None``: every finding.

    Examples
    --------
    >>> Rule("outlier", "drop_above", threshold=0.9, splits=("Training",)).to_dict()
    {'issue': 'outlier', 'action': 'drop_above', 'threshold': 0.9, 'splits': ['Training']}
    >>> Rule("label_conflict", "relabel").scope
    ('Training',)
    """

    issue: str
    action: str
    keep: str = "first"
    threshold: float | None = None
    splits: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None
    signals: tuple[str, ...] | None = None

    @property
    def removes(self) -> bool:
        """True for the actions that remove images (all but ``relabel``)."""
        return self.action in REMOVAL_ACTIONS

    @property
    def scope(self) -> tuple[str, ...]:
        """The splits the rule acts on: ``splits``, or its action's default."""
        if self.splits is not None:
            return tuple(self.splits)
        return SPLITS if self.removes else RELABEL_SPLITS

    def validate(self) -> Rule:
        """Raise ``ValueError`` naming the bad field; return self.

        Checks the fields, then the issue against the auditor registry (an issue must be
        registered; ``keep_one`` needs a grouped one, ``relabel`` one that suggests
        labels).

        Examples
        --------
        >>> Rule("outlier", "relabel").validate()
        Traceback (most recent call last):
        ...
        ValueError: rule action 'relabel' needs an issue whose findings suggest ...
        """
        from ferclean.auditors import REGISTRY

        self.check_fields()
        if self.issue not in REGISTRY:
            raise ValueError(f"rule issue {self.issue!r} is not a registered issue type "
                             f"({', '.join(REGISTRY)})")
        if self.action == "keep_one" and not REGISTRY[self.issue].grouped:
            grouped = [name for name, cls in REGISTRY.items() if cls.grouped]
            raise ValueError(f"keep_one needs a grouped issue ({', '.join(grouped)}); "
                             f"got {self.issue!r}")
        if self.action == "relabel" and not _suggests_labels(REGISTRY[self.issue]):
            labelled = [name for name, cls in REGISTRY.items() if _suggests_labels(cls)]
            raise ValueError(f"rule action 'relabel' needs an issue whose findings suggest "
                             f"labels ({', '.join(labelled)}); rule issue is {self.issue!r}")
        return self

    def check_fields(self) -> Rule:
        """The checks that need no registry (action, keep, threshold, splits, kinds,
        signals).

        Examples
        --------
        >>> Rule("label_issue", "relabel", splits=("Test",)).check_fields()
        Traceback (most recent call last):
        ...
        ValueError: rule split 'Test' is not one of Training, PublicTest, PrivateTest
        """
        if not isinstance(self.issue, str) or not self.issue:
            raise ValueError(f"rule issue must be an issue name; got {self.issue!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"rule action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.keep not in KEEP_RULES:
            raise ValueError(f"rule keep {self.keep!r} is not one of {', '.join(KEEP_RULES)}")
        if self.action == "drop_above" and self.threshold is None:
            raise ValueError("drop_above needs a threshold in [0, 1]")
        if self.threshold is not None and (
                isinstance(self.threshold, bool) or not isinstance(self.threshold, Real)
                or not 0 <= float(self.threshold) <= 1):
            raise ValueError(f"rule threshold must be a number in [0, 1]; got "
                             f"{self.threshold!r}")
        for name, values, allowed in (("split", self.splits, SPLITS),
                                      ("kind", self.kinds, GROUP_KINDS),
                                      ("signal", self.signals, LABEL_SIGNALS)):
            if isinstance(values, str):
                raise ValueError(f"rule {name}s must be a list of {name} names; got "
                                 f"{values!r}")
            for value in values or ():
                if value not in allowed:
                    raise ValueError(f"rule {name} {value!r} is not one of "
                                     f"{', '.join(allowed)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON; defaults left out."""
        out: dict[str, Any] = {"issue": self.issue, "action": self.action}
        if self.action == "keep_one":
            out["keep"] = self.keep
        if self.threshold is not None:
            out["threshold"] = float(self.threshold)
        if self.splits is not None:
            out["splits"] = list(self.splits)
        if self.kinds is not None:
            out["kinds"] = list(self.kinds)
        if self.signals is not None:
            out["signals"] = list(self.signals)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        """Build a rule from plain data, rejecting unknown keys."""
        known = {"issue", "action", "keep", "threshold", "splits", "kinds", "signals"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown rule field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        missing = [name for name in ("issue", "action") if name not in data]
        if missing:
            raise ValueError(f"rule {data!r} is missing field(s) {missing}")
        splits, kinds, signals = data.get("splits"), data.get("kinds"), data.get("signals")
        for name, values in (("splits", splits), ("kinds", kinds), ("signals", signals)):
            if isinstance(values, str):
                raise ValueError(f"rule {name} must be a list; got {values!r}")
        return cls(
            issue=data["issue"], action=data["action"], keep=data.get("keep", "first"),
            threshold=data.get("threshold"),
            splits=tuple(splits) if splits is not None else None,
            kinds=tuple(kinds) if kinds is not None else None,
            signals=tuple(signals) if signals is not None else None,
        ).validate()

    def describe(self) -> str:
        """One line saying what the rule does.

        Examples
        --------
        >>> Rule("label_issue", "relabel", threshold=0.5).describe()
        'label_issue: relabel to the suggested label (score >= 0.5) in Training'
        """
        narrowed = (*(self.kinds or ()), *(self.signals or ()))
        what = f"{self.issue} ({'/'.join(narrowed)})" if narrowed else self.issue
        if self.action == "relabel":  # where, always: its default is not every split
            above = f" (score >= {self.threshold})" if self.threshold is not None else ""
            return (f"{what}: relabel to the suggested label{above} in "
                    f"{'/'.join(self.scope) or 'no split'}")
        where = f" from {'/'.join(self.splits)}" if self.splits else ""
        if self.action in ("drop", "drop_all"):
            return f"{what}: drop every flagged image{where}"
        if self.action == "keep_one":
            return f"{what}: keep one per group ({self.keep}), drop the rest{where}"
        return f"{what}: drop images scoring >= {self.threshold}{where}"


@dataclass(frozen=True)
class CleaningPlan:
    """A named list of rules: what to do with the images each issue type flags.

    The findings it acts on come from an audit (:func:`~ferclean.auditors.audit`, or read
    back with :func:`~ferclean.findings.read_findings`). A plan whose promise depends on
    what the audit looked for says so in ``requires``: auditor parameters by issue name
    (``strict`` needs near and mirrored copies examined). :func:`~ferclean.cleaning.clean`
    refuses findings audited otherwise, and :func:`~ferclean.cleaning.audit_and_clean`
    audits with them; a plan never changes an audit's settings silently.

    Examples
    --------
    >>> plan = CleaningPlan.preset("seed-final")
    >>> [r.issue for r in plan.rules]
    ['label_conflict', 'outlier']
    >>> CleaningPlan.from_dict(plan.to_dict()) == plan
    True
    """

    name: str
    rules: tuple[Rule, ...] = ()
    description: str = ""
    requires: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rule in self.rules:  # the registry is consulted by validate(), at use
            rule.check_fields()
        from ferclean.auditors import REGISTRY

        for issue, params in self.requires.items():
            if issue not in REGISTRY:
                raise ValueError(f"plan requires settings of {issue!r}, which is not a "
                                 f"registered issue type ({', '.join(REGISTRY)})")
            REGISTRY[issue]().set_params(**params)  # unknown parameter names raise here

    def validate(self) -> CleaningPlan:
        """Check every rule against the auditor registry (see :meth:`Rule.validate`).

        :func:`~ferclean.cleaning.clean`, :meth:`preset`, :meth:`resolve` and reading a
        plan file call it; building a plan does not, so a preset may name an issue whose
        auditor registers after ferclean's import.

        Examples
        --------
        >>> CleaningPlan("mine", (Rule("dark_image", "drop"),)).validate()
        Traceback (most recent call last):
        ...
        ValueError: rule issue 'dark_image' is not a registered issue type (...)
        """
        for rule in self.rules:
            rule.validate()
        return self

    @property
    def issues(self) -> list[str]:
        """Issue types the plan needs findings for, in audit order (unregistered last)."""
        from ferclean.auditors import REGISTRY

        wanted = list(dict.fromkeys(r.issue for r in self.rules))
        return [i for i in REGISTRY if i in wanted] + [i for i in wanted if i not in REGISTRY]

    @property
    def removal_rules(self) -> tuple[Rule, ...]:
        """The rules that remove images, in plan order."""
        return tuple(r for r in self.rules if r.removes)

    @property
    def relabel_rules(self) -> tuple[Rule, ...]:
        """The ``relabel`` rules, in plan order (the first to suggest a label wins)."""
        return tuple(r for r in self.rules if not r.removes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "rules": [r.to_dict() for r in self.rules],
            **({"requires": {k: dict(v) for k, v in self.requires.items()}}
               if self.requires else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleaningPlan:
        known = {"name", "description", "rules", "requires"}
        if "auditors" in data:
            raise ValueError("plans no longer carry audit settings ('auditors'): give them "
                             "to the audit (ferclean audit --near-similarity ..., or "
                             "audit(params=...)) and clean with its findings")
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown plan field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(
            name=str(data.get("name", "custom")),
            rules=tuple(Rule.from_dict(r) for r in data.get("rules", [])),
            description=str(data.get("description", "")),
            requires={k: dict(v) for k, v in (data.get("requires") or {}).items()},
        )

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the plan as JSON (or YAML for ``.yaml``/``.yml``), atomically.

        An existing file is replaced only with ``overwrite=True`` (the output guard,
        :mod:`ferclean._outputs`, as for every output).
        """
        from ferclean._outputs import output_file

        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            yaml = _yaml()
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        with output_file(path, overwrite=overwrite) as tmp:
            tmp.write_text(text)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CleaningPlan:
        """Read a plan saved by :meth:`save` (JSON, or YAML with PyYAML installed)."""
        path = Path(path)
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                data = _yaml().safe_load(text)
            else:
                data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: not a valid plan file: {exc}") from exc
        try:
            return cls.from_dict(data)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def preset(cls, name: str) -> CleaningPlan:
        """One of :data:`PRESETS`."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {', '.join(PRESETS)}")
        return PRESETS[name].validate()

    @classmethod
    def resolve(cls, plan: CleaningPlan | str | os.PathLike) -> CleaningPlan:
        """A plan object, a preset name, or a path to a plan file.

        Examples
        --------
        >>> CleaningPlan.resolve("dedup").name
        'dedup'
        """
        if isinstance(plan, CleaningPlan):
            return plan.validate()
        if isinstance(plan, str) and plan in PRESETS:
            return PRESETS[plan].validate()
        if Path(plan).is_file():
            return cls.load(plan)
        raise ValueError(
            f"plan {plan!r} is neither a preset ({', '.join(PRESETS)}) nor a plan file"
        )

    def restricted_to(self, splits: Iterable[str]) -> CleaningPlan:
        """The same plan, acting only on ``splits`` (e.g. Training only).

        Examples
        --------
        >>> plan = CleaningPlan.preset("strict").restricted_to(["PublicTest"])
        >>> {r.splits for r in plan.rules}
        {()}
        """
        splits = tuple(splits)
        rules = tuple(
            dataclasses.replace(r, splits=tuple(s for s in r.scope if s in splits))
            for r in self.rules
        )
        return CleaningPlan(f"{self.name}[{'+'.join(splits)}]", rules, self.description,
                            dict(self.requires))


def _suggests_labels(auditor: type) -> bool:
    """Whether an auditor's findings carry suggested labels (``relabel`` can act on them).

    An auditor class says so with ``suggests_labels = True``; ferclean's label issues
    count without it.
    """
    return bool(getattr(auditor, "suggests_labels",
                        getattr(auditor, "issue_name", "") in _LABEL_ISSUES))


def _yaml():
    try:
        import yaml
    except ImportError:  # pragma: no cover - optional
        raise ValueError("YAML plans need PyYAML (pip install pyyaml); use JSON") from None
    return yaml


_TRAIN = ("Training",)
_EXACT = ("exact",)  # the study's presets: identical copies only, as the study did
PRESETS: dict[str, CleaningPlan] = {
    "raw": CleaningPlan("raw", (), "nothing removed (the study's variation A)"),
    "dedup": CleaningPlan(
        "dedup", (Rule("exact_duplicate", "keep_one"),),
        "keep the first image of every exact-duplicate group (variation B)"),
    "no-conflicts": CleaningPlan(
        "no-conflicts", (Rule("label_conflict", "drop_all", kinds=_EXACT),),
        "drop every member of an exact-duplicate group with conflicting labels "
        "(variation C; the study's exact groups only)"),
    "no-outliers": CleaningPlan(
        "no-outliers", (Rule("outlier", "drop_all"),),
        "drop every image the outlier auditor flags (variation D)"),
    "seed-final": CleaningPlan(
        "seed-final",
        (Rule("label_conflict", "drop_all", kinds=_EXACT), Rule("outlier", "drop_all")),
        "no-conflicts + no-outliers (variation C+D, the study's final dataset; exact "
        "groups only)"),
    "strict": CleaningPlan(
        "strict",
        (
            Rule("exact_duplicate", "keep_one", keep="prefer_test", splits=_TRAIN),
            Rule("label_conflict", "drop_all", splits=_TRAIN),
            Rule("outlier", "drop_all", splits=_TRAIN),
            Rule("cross_split_leak", "drop_all", splits=_TRAIN),
        ),
        "dedup + no-conflicts + no-outliers + no cross-split leaks over exact, near and "
        "mirrored copies, all removed from Training only: Training keeps no copy of any "
        "test image and no conflicting copies; the test splits stay untouched so results "
        "remain comparable",
        requires={"near_duplicate": {"mirror": True},
                  "label_conflict": {"duplicates": "all"},
                  "cross_split_leak": {"duplicates": "all"}}),
    # label_issue's auditor may register after this module is imported: plans are
    # checked against the registry when used (CleaningPlan.validate), not here
    "no-label-issues": CleaningPlan(
        "no-label-issues", (Rule("label_issue", "drop", splits=_TRAIN),),
        "drop every Training image the label_issue auditor flags as likely mislabeled; "
        "the test splits stay untouched"),
    "relabel": CleaningPlan(
        "relabel", (Rule("label_issue", "relabel", splits=_TRAIN),),
        "give every Training image the label_issue auditor flags its suggested label "
        "(images without a suggestion keep theirs); the test splits stay untouched"),
}
