"""Cleaning plans as data: rules per issue type, saved and loaded as JSON or YAML, and presets.

A :class:`CleaningPlan` is a list of :class:`Rule` s, each saying what to do with the
images one issue type flags (drop them all, keep one per group, or drop those scoring
above a threshold), optionally only in some splits. Presets mirror the study's variations
(``raw``, ``dedup``, ``no-conflicts``, ``no-outliers``, ``seed-final``) plus ferclean's
``strict``, which never touches the test splits.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferclean.dataset import SPLITS

__all__ = ["ACTIONS", "KEEP_RULES", "PRESETS", "CleaningPlan", "Rule"]

ACTIONS: tuple[str, ...] = ("drop_all", "keep_one", "drop_above")
#: Values of a rule's ``kinds`` (the findings' ``kind`` column for grouped issues).
GROUP_KINDS: tuple[str, ...] = ("exact", "near", "mirror")
KEEP_RULES: tuple[str, ...] = ("first", "prefer_test", "prefer_training")


@dataclass(frozen=True)
class Rule:
    """What to do with the images that one issue type flags.

    Parameters
    ----------
    issue : str
        An issue name (``exact_duplicate``, ``label_conflict``, ``outlier``, ...).
    action : {"drop_all", "keep_one", "drop_above"}
        ``drop_all`` removes every flagged image; ``keep_one`` keeps one image per group
        (grouped issues only) and removes the rest; ``drop_above`` removes images whose
        score is at least ``threshold``.
    keep : {"first", "prefer_test", "prefer_training"}, default="first"
        For ``keep_one``: which image a group keeps: the first in input order, or the
        first in a test split (PublicTest/PrivateTest), or in Training, if any.
    threshold : float, default=None
        For ``drop_above``.
    splits : tuple of str, default=None
        Remove images only from these splits (``None``: any split).
    kinds : tuple of str, default=None
        Act only on findings of these kinds (``"exact"``, ``"near"``, ``"mirror"``: the
        findings' ``kind`` column); ``None``: every finding of the issue. The study's
        presets act on exact groups only, as the study did.

    Examples
    --------
    >>> Rule("outlier", "drop_above", threshold=0.9, splits=("Training",)).to_dict()
    {'issue': 'outlier', 'action': 'drop_above', 'threshold': 0.9, 'splits': ['Training']}
    """

    issue: str
    action: str
    keep: str = "first"
    threshold: float | None = None
    splits: tuple[str, ...] | None = None
    kinds: tuple[str, ...] | None = None

    def validate(self) -> Rule:
        """Raise ``ValueError`` naming the bad field; return self."""
        from ferclean.auditors import REGISTRY

        if self.issue not in REGISTRY:
            raise ValueError(f"rule issue {self.issue!r} is not a registered issue type "
                             f"({', '.join(REGISTRY)})")
        if self.action not in ACTIONS:
            raise ValueError(f"rule action {self.action!r} is not one of {', '.join(ACTIONS)}")
        if self.action == "keep_one" and not REGISTRY[self.issue].grouped:
            grouped = [name for name, cls in REGISTRY.items() if cls.grouped]
            raise ValueError(f"keep_one needs a grouped issue ({', '.join(grouped)}); "
                             f"got {self.issue!r}")
        if self.keep not in KEEP_RULES:
            raise ValueError(f"rule keep {self.keep!r} is not one of {', '.join(KEEP_RULES)}")
        if self.action == "drop_above" and self.threshold is None:
            raise ValueError("drop_above needs a threshold in [0, 1]")
        if self.threshold is not None and not 0 <= float(self.threshold) <= 1:
            raise ValueError(f"threshold must be in [0, 1]; got {self.threshold!r}")
        for split in self.splits or ():
            if split not in SPLITS:
                raise ValueError(f"rule split {split!r} is not one of {', '.join(SPLITS)}")
        for kind in self.kinds or ():
            if kind not in GROUP_KINDS:
                raise ValueError(f"rule kind {kind!r} is not one of {', '.join(GROUP_KINDS)}")
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
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        """Build a rule from plain data, rejecting unknown keys."""
        known = {"issue", "action", "keep", "threshold", "splits", "kinds"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown rule field(s) {sorted(unknown)}; allowed: {sorted(known)}")
        splits, kinds = data.get("splits"), data.get("kinds")
        return cls(
            issue=data["issue"], action=data["action"], keep=data.get("keep", "first"),
            threshold=data.get("threshold"),
            splits=tuple(splits) if splits is not None else None,
            kinds=tuple(kinds) if kinds is not None else None,
        ).validate()

    def describe(self) -> str:
        """One line saying what the rule does."""
        where = f" from {'/'.join(self.splits)}" if self.splits else ""
        what = f"{self.issue} ({'/'.join(self.kinds)})" if self.kinds else self.issue
        if self.action == "drop_all":
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
        for rule in self.rules:
            rule.validate()
        from ferclean.auditors import REGISTRY

        for issue, params in self.requires.items():
            if issue not in REGISTRY:
                raise ValueError(f"plan requires settings of {issue!r}, which is not a "
                                 f"registered issue type ({', '.join(REGISTRY)})")
            REGISTRY[issue]().set_params(**params)  # unknown parameter names raise here

    @property
    def issues(self) -> list[str]:
        """Issue types the plan needs findings for, in audit order."""
        from ferclean.auditors import REGISTRY

        wanted = {r.issue for r in self.rules}
        return [i for i in REGISTRY if i in wanted]

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

    def save(self, path: str | os.PathLike) -> Path:
        """Write the plan as JSON (or YAML for ``.yaml``/``.yml``), atomically."""
        from ferclean._atomic import atomic_file

        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            yaml = _yaml()
            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        with atomic_file(path) as tmp:
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
        return PRESETS[name]

    @classmethod
    def resolve(cls, plan: CleaningPlan | str | os.PathLike) -> CleaningPlan:
        """A plan object, a preset name, or a path to a plan file.

        Examples
        --------
        >>> CleaningPlan.resolve("dedup").name
        'dedup'
        """
        if isinstance(plan, CleaningPlan):
            return plan
        if isinstance(plan, str) and plan in PRESETS:
            return PRESETS[plan]
        if Path(plan).is_file():
            return cls.load(plan)
        raise ValueError(
            f"plan {plan!r} is neither a preset ({', '.join(PRESETS)}) nor a plan file"
        )

    def restricted_to(self, splits: Iterable[str]) -> CleaningPlan:
        """The same plan, removing images only from ``splits`` (e.g. Training only)."""
        splits = tuple(splits)
        rules = tuple(
            dataclasses.replace(r, splits=tuple(s for s in (r.splits or SPLITS) if s in splits))
            for r in self.rules
        )
        return CleaningPlan(f"{self.name}[{'+'.join(splits)}]", rules, self.description,
                            dict(self.requires))


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
}
