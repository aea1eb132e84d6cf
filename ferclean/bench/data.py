"""The data of one run: cleaned training data, subsets, evaluation sets, by protocol.

``honest`` (default)
    The official splits. Cleaning decisions and resampling use Training only; PublicTest
    drives early stopping and the learning-rate schedule; PrivateTest is reported, and so
    is **PrivateTest de-leaked**: PrivateTest without the images that have an exact, near
    or mirrored copy in the *raw* Training split. It is computed once per suite run and
    every cell is evaluated on it: every cleaned Training is a subset of the raw one and a
    resampled copy adds no new image, so no cell's training data holds a copy of any of
    its images, and all cells are compared on the same images.
``seed-replica``
    A REPLICA OF A FLAWED PROTOCOL, the study's: clean the whole dataset, oversample it,
    then split it at random 90/10. Copies of one image land on both sides of the split,
    so its accuracy measures memorisation as much as recognition.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferclean.bench.profiles import PROTOCOLS, REPLICA_LABEL, VARIATIONS, Cell, Profile
from ferclean.dataset import FaceDataset

__all__ = ["EVAL_SEED", "Prepared", "deleaked", "evaluation_checksum", "evaluation_record",
           "evaluation_sets", "prepare"]

#: Seed of the evaluation sets' draw in subset profiles: one fixed draw, so every cell and
#: seed is evaluated on the same images (paired over images as well as over seeds).
EVAL_SEED = 0


def _stratified_subset(ds: FaceDataset, n: int | None, seed: int) -> FaceDataset:
    """About ``n`` images drawn with a fixed seed, each class in its share of ``ds`` (at
    least one image of every class present), in input order.

    The class shares are kept on purpose: a subset balanced per class would leave the
    oversamplers nothing to do, and the seed-replica nothing to leak.
    """
    if n is None or len(ds) <= n:
        return ds
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(ds), bool)
    labels, counts = np.unique(ds.labels, return_counts=True)
    for label, count in zip(labels, counts, strict=True):
        idx = np.flatnonzero(ds.labels == label)
        keep[rng.permutation(idx)[:max(1, round(n * count / len(ds)))]] = True
    return ds.subset(keep)


def _cap(ds: FaceDataset, n: int | None, seed: int) -> FaceDataset:
    """At most ``n`` images drawn uniformly with a fixed seed, in input order."""
    if n is None or len(ds) <= n:
        return ds
    keep = np.zeros(len(ds), bool)
    keep[np.random.default_rng(seed).permutation(len(ds))[:n]] = True
    return ds.subset(keep)


def deleaked(train: FaceDataset, test: FaceDataset, *, near: bool = True) -> FaceDataset:
    """``test`` without the images that have a copy in ``train``.

    Parameters
    ----------
    train, test : FaceDataset
        The images a model trains on and those it is evaluated on.
    near : bool, default=True
        Drop near and mirrored copies too (verified on the pixels), not only exact ones.

    Returns
    -------
    FaceDataset
        The images of ``test`` with no copy in ``train``, in input order.

    See Also
    --------
    ferclean.protocol.check_leakage : the pairs of copies themselves.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> test = ds.split("PrivateTest")
    >>> exact_only = deleaked(ds.split("Training"), test, near=False)
    >>> len(deleaked(ds.split("Training"), test)) < len(exact_only) < len(test)
    True
    """
    from ferclean.protocol import check_leakage

    leaks = check_leakage(train, test, near=near, mirror=near)
    keep = np.ones(len(test), bool)
    keep[leaks["test_position"].to_numpy()] = False
    return test.subset(keep)


def evaluation_sets(ds: FaceDataset, eval_subset: int | None = None) -> dict[str, FaceDataset]:
    """The honest protocol's evaluation sets, the same for every cell and seed of a run.

    ``PrivateTest`` (in subset profiles, ``eval_subset`` images drawn once with
    :data:`EVAL_SEED`) and ``PrivateTest_deleaked``: those of its images with no exact,
    near or mirrored copy in the **raw** Training split. Every cleaned Training is a
    subset of the raw one and resampling adds copies of its images (or SMOTE blends, no
    copies), so the de-leaked set holds no copy of any image any cell trains on.

    Parameters
    ----------
    ds : FaceDataset
        The whole dataset, all three splits.
    eval_subset : int or None, default=None
        The profile's :attr:`~ferclean.bench.Profile.eval_subset`: PrivateTest images
        drawn; ``None`` keeps them all.

    Returns
    -------
    dict of str to FaceDataset
        ``{"PrivateTest": ..., "PrivateTest_deleaked": ...}``, images in input order.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> sets = evaluation_sets(ds)
    >>> len(sets["PrivateTest_deleaked"]) < len(sets["PrivateTest"]) == len(
    ...     ds.split("PrivateTest"))
    True
    """
    test = _cap(ds.split("PrivateTest"), eval_subset, EVAL_SEED)
    return {"PrivateTest": test,
            "PrivateTest_deleaked": deleaked(ds.split("Training"), test)}


def evaluation_checksum(ds: FaceDataset) -> str:
    """SHA-256 of an evaluation set's rows, labels and pixels, in order.

    Two runs evaluated on sets with the same checksum saw the same images with the same
    labels; a results file records it per run and evaluation set.

    Examples
    --------
    >>> import numpy as np
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=100)
    >>> evaluation_checksum(ds) == evaluation_checksum(ds.subset(np.ones(len(ds), bool)))
    True
    >>> evaluation_checksum(ds) == evaluation_checksum(ds[1:])
    False
    """
    digest = hashlib.sha256()
    for array in (ds.rows.astype("<i8"), ds.labels.astype("<i8"),
                  np.ascontiguousarray(ds.pixels, dtype=np.uint8)):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def evaluation_record(ds: FaceDataset) -> dict[str, Any]:
    """What results files keep of an evaluation set: ``n``, ``rows`` and ``checksum``.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> record = evaluation_record(demo_dataset(n_faces=100).split("PrivateTest"))
    >>> sorted(record), record["n"] == len(record["rows"])
    (['checksum', 'n', 'rows'], True)
    """
    return {"n": len(ds), "rows": ds.rows.tolist(), "checksum": evaluation_checksum(ds)}


@dataclass
class Prepared:
    """The data one run trains and is evaluated on (what :func:`prepare` returns).

    Attributes
    ----------
    train, val : FaceDataset
        Training data (resampled if the cell says so) and the early-stopping set.
    tests : dict of str to FaceDataset
        Evaluation sets by name (``PrivateTest``, ``PrivateTest_deleaked`` or
        ``replica_test``).
    class_weights : dict of int to float or None
        Loss weights, for the ``class_weights`` sampling.
    info : dict
        What results files record: images removed by cleaning, training size, labels.

    Examples
    --------
    >>> from ferclean.bench import PROFILES, Cell
    >>> from ferclean.demo import demo_dataset
    >>> p = prepare(demo_dataset(n_faces=300), Cell("seed-replica", "A", "ros", "cnn_lstm"),
    ...             PROFILES["smoke"], seed=0)
    >>> list(p.tests), "FLAWED" in p.info["label"]
    (['replica_test'], True)
    """

    train: FaceDataset
    val: FaceDataset
    tests: dict[str, FaceDataset]
    class_weights: dict[int, float] | None = None
    info: dict[str, Any] = field(default_factory=dict)


def prepare(ds: FaceDataset, cell: Cell, profile: Profile, seed: int,
            cache: dict[Any, Any] | None = None) -> Prepared:
    """Build train/validation/test data for one cell and seed, by the cell's protocol.

    The honest protocol never lets a Training image — or a resampled copy of one — into
    the evaluation sets: they are the official PublicTest/PrivateTest images, untouched.
    ``PrivateTest_deleaked`` also drops the PrivateTest images with an exact, near or
    mirrored copy in the raw Training split (:func:`evaluation_sets`): the same set for
    every cell and seed.

    Parameters
    ----------
    ds : FaceDataset
        The whole dataset, all three splits.
    cell : Cell
    profile : Profile
        Gives the subset sizes and the replica's test fraction.
    seed : int
        Seed of the subsets, the resampling and the replica's random split.
    cache : dict, default=None
        Kept across calls on the same ``ds``: saves the cleaning that cells with the same
        variation share and the evaluation sets all cells share; results are the same
        without it.

    Returns
    -------
    Prepared

    Examples
    --------
    >>> from ferclean.bench import PROFILES, Cell
    >>> from ferclean.demo import demo_dataset
    >>> p = prepare(demo_dataset(n_faces=300), Cell("honest", "A", "none", "cnn_lstm"),
    ...             PROFILES["smoke"], seed=0)
    >>> sorted(p.tests), set(p.train.split_names)
    (['PrivateTest', 'PrivateTest_deleaked'], {'Training'})
    """
    cache = {} if cache is None else cache

    def cached(key: tuple, make: Callable[[], Any]) -> Any:
        if key not in cache:
            cache[key] = make()
        return cache[key]

    if cell.protocol == "honest":
        return _prepare_honest(ds, cell, profile, seed, cached)
    if cell.protocol == "seed-replica":
        return _prepare_replica(ds, cell, profile, seed, cached)
    raise ValueError(f"unknown protocol {cell.protocol!r}; expected one of {PROTOCOLS}")


def _variation_audit(ds: FaceDataset) -> Any:
    """One audit of ``ds`` with every auditor the variations' plans need, with the
    settings they require (strict's near and mirrored copies): the variations of one data
    role clean from the same findings."""
    from ferclean.auditors import audit
    from ferclean.cleaning import CleaningPlan

    plans = [CleaningPlan.preset(plan) for plan in VARIATIONS.values()]
    # label issues need out-of-fold probabilities: their own audit (_label_audit)
    needed = {issue for plan in plans for issue in plan.issues} - {"label_issue"}
    params: dict[str, dict[str, Any]] = {}
    for plan in plans:
        for issue, values in plan.requires.items():
            params.setdefault(issue, {}).update(values)
    return audit(ds, only=sorted(needed), params=params)


#: Out-of-fold settings of the label-issue variations per profile: the CPU default model,
#: smaller for the smoke profile (seconds, not minutes).
CROSSVAL_PARAMS: dict[str, dict[str, Any]] = {"smoke": {"n_filters": 16, "n_patches": 5000}}


def _label_audit(ds: FaceDataset, profile_name: str) -> Any:
    """The label-issue audit of ``ds`` (Training only): out-of-fold probabilities from
    five folds inside it, every group of copies in one fold, then the copies' vote."""
    from ferclean.auditors import audit
    from ferclean.learning.crossval import crossval

    probs = crossval(ds, folds=5, seed=0, splits=("Training",),
                     params=CROSSVAL_PARAMS.get(profile_name))
    return audit(ds, only=["label_issue"], params={"label_issue": {"pred_probs": probs}})


def _cleaned(ds: FaceDataset, variation: str, role: str,
             cached: Callable[[tuple, Callable[[], Any]], Any],
             profile_name: str = "full") -> tuple[FaceDataset, int]:
    """``ds`` cleaned by the variation's plan, and how many images that removed (or, for
    ``relabel``, relabeled).

    The suite's one call into :mod:`ferclean.cleaning`. ``role`` names what ``ds`` is
    (``"all"``, ``"training"``, ``"merged"``): its audit is made once and cached.
    """
    from ferclean.cleaning import CleaningPlan, clean

    plan = CleaningPlan.preset(VARIATIONS[variation])
    if not plan.issues:
        return ds, 0
    if "label_issue" in plan.issues:
        if role != "training":
            raise ValueError(f"variation {variation!r} finds label issues on Training only "
                             f"(honest protocol); not on the {role!r} data")
        found = cached(("label_audit", role), lambda: _label_audit(ds, profile_name))
    else:
        found = cached(("audit", role), lambda: _variation_audit(ds))
    result = clean(ds, plan, found)
    return result.cleaned, len(result.manifest.removed) + len(result.manifest.relabeled)


def _prepare_honest(ds: FaceDataset, cell: Cell, profile: Profile, seed: int,
                    cached: Callable[[tuple, Callable[[], Any]], Any]) -> Prepared:
    from ferclean.protocol import class_weights, resample

    def cleaned_training() -> tuple[FaceDataset, int]:
        if VARIATIONS[cell.variation] == "strict":
            # strict looks at test images only to remove their copies from Training
            cleaned, removed = _cleaned(ds, cell.variation, "all", cached)
            return cleaned.split("Training"), removed
        return _cleaned(ds.split("Training"), cell.variation, "training", cached,
                        profile.name)

    train, removed = cached(("honest", cell.variation), cleaned_training)
    train = _stratified_subset(train, profile.train_subset, seed)
    val = _cap(ds.split("PublicTest"), profile.eval_subset, seed)
    # One pair of evaluation sets for the whole run: de-leaked against the raw Training,
    # of which every cleaned (and resampled) training set is made.
    tests = dict(cached(("evaluation", profile.eval_subset),
                        lambda: evaluation_sets(ds, profile.eval_subset)))
    weights = class_weights(train) if cell.sampling == "class_weights" else None
    if cell.sampling in ("ros", "smote"):
        train = resample(train, cell.sampling, random_state=seed)
    return Prepared(train, val, tests, weights, {"removed": removed, "n_train": len(train)})


def _prepare_replica(ds: FaceDataset, cell: Cell, profile: Profile, seed: int,
                     cached: Callable[[tuple, Callable[[], Any]], Any]) -> Prepared:
    from ferclean.protocol import class_weights, random_split, resample

    # The study's steps, in its order: clean everything, oversample everything, then
    # split at random. Kept only to measure how much this inflates accuracy.
    def cleaned_everything() -> tuple[FaceDataset, int]:
        merged = FaceDataset(ds.pixels, ds.labels, np.zeros(len(ds), np.int8), ds.ids,
                             ds.rows, source=ds.source)
        return _cleaned(merged, cell.variation, "merged", cached)

    cleaned, removed = cached(("seed-replica", cell.variation), cleaned_everything)
    cleaned = _stratified_subset(cleaned, profile.train_subset, seed)
    weights = class_weights(cleaned) if cell.sampling == "class_weights" else None
    pool = (resample(cleaned, cell.sampling, random_state=seed)
            if cell.sampling in ("ros", "smote") else cleaned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the LeakageWarning is the point of the replica
        train, test = random_split(pool, profile.replica_test_fraction,
                                   random_state=seed, allow_resampled=True)
        train, val = random_split(train, profile.replica_test_fraction,
                                  random_state=seed + 1, allow_resampled=True)
    return Prepared(train, val, {"replica_test": test}, weights,
                    {"removed": removed, "n_train": len(train), "label": REPLICA_LABEL})
