"""Out-of-fold class probabilities, with every group of copies inside one fold.

Confident learning needs, for every image, probabilities from a model that never saw it.
:func:`crossval` splits the chosen images into folds with scikit-learn's
``StratifiedGroupKFold``, where a group is a set of exact or near copies of one photo
(:func:`ferclean.similarity.exact.merge_groups` over both groupings): otherwise a copy
in another fold would hand the model its label and hide the very errors we look for.

Two kinds of model:

- ``"patches"`` (the default, CPU): learned patch features + shrinkage LDA
  (:mod:`ferclean.learning.features`), scikit-learn only, about ten minutes for five
  folds of FER-2013 Training on a 2-core CPU;
- any registered reference net (``"cnn_lstm"``, ``"cnn_mha"``, ...), trained per fold
  with :func:`ferclean.learning.train` (JAX; meant for a GPU), the next fold serving as
  its validation set.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ferclean._progress import Progress
from ferclean.dataset import EMOTIONS, SPLITS, FaceDataset

__all__ = ["FEATURE_MODELS", "CrossvalResult", "crossval", "group_folds", "read_crossval"]

#: Models fitted on features, not trained as nets (no JAX needed).
FEATURE_MODELS: tuple[str, ...] = ("patches",)
CROSSVAL_FORMAT = "ferclean-crossval"
CROSSVAL_VERSION = 1


@dataclass
class CrossvalResult:
    """Out-of-fold probabilities for some images of a dataset.

    Attributes
    ----------
    pred_probs : ndarray (m, 7)
        Each row from a model that did not see that image (nor any copy of it).
    image_ids, rows, labels, fold : ndarray (m,)
        The images' ids and input rows, the labels the models were trained on, and the
        fold each image was held out in.
    info : dict
        Model, folds, seed, splits, accuracy, seconds, group counts.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> result = crossval(ds, folds=3, params={"n_filters": 16, "n_patches": 2000})
    >>> result.pred_probs.shape[1], sorted(set(result.fold.tolist()))
    (7, [0, 1, 2])
    """

    pred_probs: np.ndarray
    image_ids: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    fold: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        """Out-of-fold accuracy of the most probable class."""
        return float((self.pred_probs.argmax(axis=1) == self.labels).mean())

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the ``.npz`` that ``--pred-probs`` and :func:`read_crossval` read.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> r = CrossvalResult(np.full((1, 7), 1 / 7), np.array(["a"]), np.array([0]),
        ...                    np.array([3]), np.array([0]), {"model": "patches"})
        >>> out = r.save(pathlib.Path(tempfile.mkdtemp()) / "probs.npz")
        >>> read_crossval(out).image_ids.tolist()
        ['a']
        """
        from ferclean._outputs import output_file

        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"{path}: out-of-fold probabilities are written as .npz")
        meta = {"format": CROSSVAL_FORMAT, "version": CROSSVAL_VERSION, **self.info}
        source = self.info.get("source")
        # the output guard, as every output: never the data it was computed from
        with output_file(path, overwrite=overwrite,
                         inputs=[source] if source and source != "demo" else []) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, pred_probs=self.pred_probs.astype(np.float64),
                         image_id=self.image_ids.astype(str), row=self.rows,
                         label=self.labels, fold=self.fold, info=np.array(json.dumps(meta)))
        return path


def read_crossval(path: str | os.PathLike) -> CrossvalResult:
    """Read a file written by :meth:`CrossvalResult.save` (``ferclean crossval``).

    Examples
    --------
    >>> read_crossval("missing.npz")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: missing.npz: not a ferclean crossval file ([Errno 2] No such file ...
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            info = json.loads(str(data["info"]))
            result = CrossvalResult(data["pred_probs"], data["image_id"].astype(str),
                                    data["row"], data["label"], data["fold"], info)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a ferclean crossval file ({exc})") from None
    if info.get("format") != CROSSVAL_FORMAT:
        raise ValueError(f"{path}: not a ferclean crossval file (format "
                         f"{info.get('format')!r})")
    return result


def _copy_groups(dataset: FaceDataset, near_params: dict[str, Any] | None) -> np.ndarray:
    """A group id per image: copies (exact or near) share one, others get their own."""
    from ferclean.auditors import AuditContext, get_auditor
    from ferclean.similarity.exact import merge_groups

    settings = {"near_duplicate": get_auditor("near_duplicate", **(near_params or {}))}
    context = AuditContext(dataset, settings)
    merged = merge_groups(context.exact_groups, context.dependency("near_duplicate").groups_)
    group = merged.group_of.copy()
    alone = group < 0
    group[alone] = merged.n_groups + np.arange(int(alone.sum()))
    return group


def group_folds(labels: Any, groups: Any, *, folds: int, seed: int = 0) -> np.ndarray:
    """A fold per image, stratified by label, with every group inside one fold.

    scikit-learn's ``StratifiedGroupKFold`` (shuffled by ``seed``).

    Examples
    --------
    >>> fold = group_folds([0, 0, 1, 1, 0, 1], [0, 0, 1, 2, 3, 4], folds=2)
    >>> bool(fold[0] == fold[1]), sorted(set(fold.tolist()))
    (True, [0, 1])
    """
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(groups)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_of = np.full(len(labels), -1, np.int64)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold_of[test] = k
    return fold_of


def crossval(
    dataset: FaceDataset,
    *,
    model: str = "patches",
    folds: int = 5,
    seed: int = 0,
    splits: tuple[str, ...] | list[str] = ("Training",),
    near_params: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
    config: Any = None,
    progress: bool = False,
) -> CrossvalResult:
    """Out-of-fold probabilities for the labelled images of ``splits``.

    Parameters
    ----------
    dataset : FaceDataset
    model : str, default="patches"
        ``"patches"`` (CPU; see the module docs) or a registered reference net.
    folds : int, default=5
    seed : int, default=0
        Folds, features and nets all derive from it.
    splits : tuple of str, default=("Training",)
        Which images get probabilities; the models see only these images' folds.
    near_params : dict, default=None
        Settings of the near-duplicate search that defines the groups kept together.
    params : dict, default=None
        For ``"patches"``: :class:`~ferclean.learning.features.PatchFeatures` settings.
    config : TrainConfig, default=None
        For a net: the training recipe (``model`` and ``seed`` are set per fold).
    progress : bool, default=False
        A bar on stderr, one step per fold.

    Returns
    -------
    CrossvalResult

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> r = crossval(demo_dataset(n_faces=300), folds=3, params={"n_filters": 16})
    >>> bool(np.allclose(r.pred_probs.sum(axis=1), 1)), r.info["model"]
    (True, 'patches')
    """
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2; got {folds}")
    started = time.perf_counter()
    chosen = np.flatnonzero(np.isin(dataset.split_names, list(splits)) & (dataset.labels >= 0))
    if len(chosen) < folds:
        raise ValueError(f"{len(chosen)} labelled images in {', '.join(splits)}: too few for "
                         f"{folds} folds")
    part = dataset.subset(chosen)
    labels = part.labels.astype(np.int64)
    groups = _copy_groups(part, near_params)
    fold_of = group_folds(labels, groups, folds=folds, seed=seed)
    probs = np.zeros((len(part), len(EMOTIONS)))
    with Progress(folds + (model in FEATURE_MODELS), f"crossval {model}",
                  enabled=progress) as bar:
        if model in FEATURE_MODELS:
            from ferclean.learning.features import PatchFeatures, PatchLDAClassifier

            features = PatchFeatures(**{"seed": seed, **(params or {})})
            # unsupervised: learned on every image, labels unused, so no fold leaks
            X = features.fit_transform(part.pixels)
            bar.update()
            for k in range(folds):
                train, test = fold_of != k, fold_of == k
                clf = PatchLDAClassifier(n_classes=len(EMOTIONS)).fit(X[train], labels[train])
                probs[test] = clf.predict_proba(X[test])
                bar.update()
        else:
            probs = _net_crossval(part, fold_of, folds, model, seed, config, bar)
    # groups seen in more than one fold: distinct (group, fold) pairs per group, vectorised
    pairs = np.unique(np.stack([groups, fold_of]), axis=1)
    groups_split = int((np.bincount(pairs[0]) > 1).sum())
    result = CrossvalResult(
        pred_probs=probs, image_ids=part.ids.astype(str), rows=part.rows.astype(np.int64),
        labels=labels, fold=fold_of, info={})
    result.info = {
        "model": model, "folds": folds, "seed": seed, "splits": list(splits),
        "n_images": int(len(part)), "accuracy": round(result.accuracy, 4),
        "copy_groups": int((np.bincount(groups) > 1).sum()),
        "copy_groups_split_across_folds": groups_split,
        "seconds": round(time.perf_counter() - started, 1),
        "source": dataset.source,
    }
    return result


def _net_crossval(part: FaceDataset, fold_of: np.ndarray, folds: int, model: str, seed: int,
                  config: Any, bar: Progress) -> np.ndarray:
    """Train a reference net per fold; the next fold is its validation set (with three
    folds or more)."""
    import dataclasses

    from ferclean.learning.training.config import TrainConfig
    from ferclean.learning.training.inference import predict_proba
    from ferclean.learning.training.loop import train

    base = config if config is not None else TrainConfig()
    probs = np.zeros((len(part), len(EMOTIONS)))
    for k in range(folds):
        # the next fold validates (early stopping, schedule); with two folds there is no
        # fold to spare, and the training loss is monitored instead
        val_fold = (k + 1) % folds if folds > 2 else -1
        train_idx = np.flatnonzero((fold_of != k) & (fold_of != val_fold))
        val = part.subset(np.flatnonzero(fold_of == val_fold)) if val_fold >= 0 else None
        cfg = dataclasses.replace(base, model=model, seed=seed + k)
        trained = train((part.subset(train_idx), val), cfg)
        test = np.flatnonzero(fold_of == k)
        probs[test] = predict_proba(trained, part.pixels[test])
        bar.update()
    return probs
