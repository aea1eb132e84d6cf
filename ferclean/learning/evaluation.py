"""Evaluate a trained classifier on labelled data, and write what the evaluation found.

:func:`evaluate` predicts one split and returns an :class:`EvaluationResult`: the metrics
(:func:`~ferclean.learning.classification_metrics`), the per-class report, one prediction
row per image and saliency maps of a few examples per class. Its ``save(out)`` writes
``metrics.json``, ``classification_report.csv``, ``predictions.csv``,
``confusion_matrix.png``, ``saliency.png`` + ``saliency.json`` + ``saliency.npz`` and,
given a training history, ``training_curves.png``.

Depends on training (inference and checkpoints), never the other way round.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from ferclean._atomic import atomic_file
from ferclean._json import write_json
from ferclean._outputs import dataset_inputs, output_dir
from ferclean._validation import check_dataset
from ferclean.dataset import EMOTIONS, FaceDataset
from ferclean.learning.metrics import classification_metrics, classification_report
from ferclean.learning.plots import (
    plot_confusion_matrix,
    plot_saliency_grid,
    plot_training_curves,
)
from ferclean.learning.training.checkpoints import (
    RUN_FILES,
    load_checkpoint,
    read_history,
)
from ferclean.learning.training.inference import (
    MODEL_TTA,
    _as_trained,
    _resolve_tta,
    predict_logits,
    saliency,
)
from ferclean.learning.training.model import TrainedModel
from ferclean.learning.training.result import TrainResult

__all__ = ["EvaluationResult", "evaluate"]

SALIENCY_METHOD = "|d score(predicted class) / d input|, input scaled to [0, 1]"
# What an evaluation folder holds: recognises one written before the output marker.
_EVALUATION_FILES = ("classification_report.csv", "predictions.csv", "confusion_matrix.png",
                     "metrics.json", "saliency.png", "saliency.npz", "saliency.json",
                     "training_curves.png")


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """What :func:`evaluate` returns.

    Attributes
    ----------
    metrics : dict
        :func:`~ferclean.learning.classification_metrics` plus ``split``,
        ``n_unlabeled``, ``model``, ``n_params`` and the caller's metadata.
    report : DataFrame
        :func:`~ferclean.learning.classification_report` of the predictions.
    predictions : DataFrame
        One row per evaluated image: ``row``, ``image_id``, ``split``, ``label``,
        ``prediction`` and ``p_<class>`` per class (rounded to 6 decimals).
    saliency : ndarray of float32, shape (k, 48, 48), or None
        Saliency maps of the examples picked per true class; None when none were asked.
    saliency_positions : ndarray of int
        Positions of those examples in :attr:`predictions`.
    images : ndarray of uint8, shape (k, 48, 48)
        Their pixels, for the saliency grid.
    history : DataFrame or None
        The training history, if one was given; ``save`` then draws the curves.
    inputs : tuple of str
        The evaluated data's source and the checkpoint's files: :meth:`save` never writes
        over them (nor into the data's folder).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
    >>> ev = evaluate(tm, demo_dataset(n_faces=100), split="PrivateTest", saliency_per_class=0)
    >>> ev.files
    ['classification_report.csv', 'confusion_matrix.png', 'metrics.json', 'predictions.csv']
    """

    metrics: dict[str, Any]
    report: pd.DataFrame
    predictions: pd.DataFrame
    saliency: np.ndarray | None
    saliency_positions: np.ndarray
    images: np.ndarray
    history: pd.DataFrame | None = None
    inputs: tuple[str, ...] = ()

    @property
    def files(self) -> list[str]:
        """Names :meth:`save` writes, sorted."""
        names = ["classification_report.csv", "predictions.csv", "confusion_matrix.png",
                 "metrics.json"]
        if self.saliency is not None:
            names += ["saliency.png", "saliency.npz", "saliency.json"]
        if self.history is not None:
            names.append("training_curves.png")
        return sorted(names)

    def save(self, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the tables, figures and JSON listed in :attr:`files` into ``out``.

        The files are written into a temporary folder that replaces ``out`` as a unit;
        ``metrics.json`` holds :attr:`metrics` plus ``files``.

        Parameters
        ----------
        out : path
            Created if missing; an empty folder is fine. Never the evaluated data or the
            checkpoint (:attr:`inputs`), nor inside them, nor a non-empty folder that
            ferclean did not write.
        overwrite : bool, default=False
            Replace an earlier evaluation (or other ferclean output) at ``out``.

        Returns
        -------
        Path
            ``out``.

        Examples
        --------
        >>> import tempfile
        >>> from ferclean.demo import demo_dataset
        >>> from ferclean.learning import init_model
        >>> from ferclean.learning.models import TINY
        >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])
        >>> ev = evaluate(tm, demo_dataset(n_faces=100), split="PrivateTest",
        ...               saliency_per_class=1)
        >>> out = ev.save(tempfile.mkdtemp())
        >>> sorted(p.name for p in out.iterdir()) == [".ferclean-output", *ev.files]
        True
        """
        with output_dir(out, what="ferclean evaluation", inputs=self.inputs,
                        overwrite=overwrite, known=_EVALUATION_FILES) as tmp:
            with atomic_file(tmp / "classification_report.csv") as part:
                self.report.to_csv(part, index_label="class")
            with atomic_file(tmp / "predictions.csv") as part:
                self.predictions.to_csv(part, index=False)
            plot_confusion_matrix(self.metrics["confusion_matrix"],
                                  tmp / "confusion_matrix.png")
            if self.saliency is not None:
                self._save_saliency(tmp)
            if self.history is not None:
                plot_training_curves(self.history, tmp / "training_curves.png")
            write_json(tmp / "metrics.json", {**self.metrics, "files": self.files})
        return Path(out)

    def _save_saliency(self, out: Path) -> None:
        picks, frame = self.saliency_positions, self.predictions
        labels = frame["label"].to_numpy()[picks]
        preds = frame["prediction"].to_numpy()[picks]
        plot_saliency_grid(self.images, self.saliency, labels, preds, out / "saliency.png")
        with atomic_file(out / "saliency.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, saliency=self.saliency.astype(np.float32),
                                positions=np.asarray(picks))
        examples = [
            {"row": int(frame["row"].iloc[k]), "image_id": str(frame["image_id"].iloc[k]),
             "label": EMOTIONS[labels[i]], "prediction": EMOTIONS[preds[i]],
             "max_saliency": float(self.saliency[i].max())}
            for i, k in enumerate(picks)
        ]
        write_json(out / "saliency.json", {"method": SALIENCY_METHOD,
                                           "maps_file": "saliency.npz", "examples": examples})


def _pick_examples(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Up to ``per_class`` positions per class, chosen with a seeded generator, sorted."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(len(EMOTIONS)):
        pool = np.flatnonzero(labels == c)
        if pool.size:
            picks.append(np.sort(rng.choice(pool, size=min(per_class, pool.size), replace=False)))
    return np.concatenate(picks) if picks else np.zeros(0, np.int64)


def _prediction_table(part: FaceDataset, logits: np.ndarray) -> pd.DataFrame:
    frame = part.to_frame()[["row", "image_id", "split", "label"]]
    frame["prediction"] = logits.argmax(axis=1)
    probs = softmax(logits, axis=1)
    for i, name in enumerate(EMOTIONS):
        frame[f"p_{name}"] = probs[:, i].round(6)
    return frame.reset_index(drop=True)


def checkpoint_inputs(folder: str | os.PathLike) -> tuple[str, ...]:
    """The files of a run folder an evaluation reads: its outputs may not replace them (so
    not the folder either), but may lie beside them (``run/eval``).

    Examples
    --------
    >>> checkpoint_inputs("run")[0]
    'run/params.msgpack'
    """
    return tuple(str(Path(folder) / name) for name in RUN_FILES)


def evaluate(
    trained: TrainedModel | TrainResult | str | os.PathLike,
    dataset: FaceDataset,
    *,
    split: str | None = None,
    saliency_per_class: int = 4,
    batch_size: int = 256,
    seed: int = 0,
    history: Any = None,
    metadata: Mapping[str, Any] | None = None,
    tta: str | None = MODEL_TTA,
) -> EvaluationResult:
    """Metrics, predictions and saliency maps of a trained model on labelled data.

    Parameters
    ----------
    trained : TrainedModel, TrainResult or path
        A path is a checkpoint folder (:func:`~ferclean.learning.load_checkpoint`): its
        ``history.json`` becomes ``history`` unless one is given, and ``metrics`` gain
        ``checkpoint`` (the folder) and ``checkpoint_epoch``.
    dataset : FaceDataset
        Unlabeled images (label -1) are skipped and counted in ``n_unlabeled``.
    split : str, default=None
        Evaluate one split only; ``None`` uses every image given.
    saliency_per_class : int, default=4
        Examples per true class for the saliency maps (chosen with ``seed``); 0 skips
        saliency.
    batch_size : int, default=256
    seed : int, default=0
    history : DataFrame or list of dict, default=None
        Training history, kept for :meth:`EvaluationResult.save` to draw the curves.
    metadata : mapping, default=None
        Extra JSON-ready entries for ``metrics`` (and ``metrics.json``).
    tta : {"model", None, "flip", "ten_crop"}, default="model"
        Test-time augmentation of the predictions (:func:`~ferclean.learning.predict_proba`);
        ``"model"`` uses the model's own (:attr:`TrainedModel.tta`, from its training
        config). ``metrics`` record it under ``tta``.

    Returns
    -------
    EvaluationResult

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.learning import init_model
    >>> from ferclean.learning.models import TINY
    >>> tm = init_model("cnn_mha", **TINY["cnn_mha"])  # untrained: about chance accuracy
    >>> ev = evaluate(tm, demo_dataset(n_faces=100), split="PrivateTest", saliency_per_class=0)
    >>> m = ev.metrics
    >>> m["split"], len(m["confusion_matrix"]), 0 <= m["accuracy"] <= 1
    ('PrivateTest', 7, True)
    """
    inputs = dataset_inputs(dataset)
    if isinstance(trained, str | os.PathLike):
        ckpt = Path(trained)
        inputs = (*inputs, *checkpoint_inputs(ckpt))
        trained = load_checkpoint(ckpt)
        history = read_history(ckpt) if history is None else history
        epoch = (trained.info.get("info") or {}).get("epoch")
        metadata = {"checkpoint": str(ckpt), "checkpoint_epoch": epoch, **dict(metadata or {})}
    elif isinstance(trained, TrainResult) and trained.out is not None:
        inputs = (*inputs, *checkpoint_inputs(trained.out))
    trained = _as_trained(trained)
    dataset = check_dataset(dataset)
    part = dataset.split(split) if split is not None else dataset
    labelled = part.labels >= 0
    n_unlabeled = int((~labelled).sum())
    part = part.subset(labelled)
    if len(part) == 0:
        raise ValueError(f"no labelled images to evaluate in {split or 'the dataset'}")
    labels = part.labels.astype(np.int64)
    tta = _resolve_tta(trained, tta)
    logits = predict_logits(trained, part, batch_size=batch_size, tta=tta)
    preds = logits.argmax(axis=1)
    metrics = classification_metrics(labels, preds, logits=logits)
    metrics.update(split=split, n_unlabeled=n_unlabeled, model=trained.model,
                   n_params=trained.n_params, tta=tta, **dict(metadata or {}))
    picks = (_pick_examples(labels, saliency_per_class, seed) if saliency_per_class > 0
             else np.zeros(0, np.int64))
    maps = saliency(trained, part.pixels[picks]) if len(picks) else None
    return EvaluationResult(
        metrics=metrics, report=classification_report(labels, preds),
        predictions=_prediction_table(part, logits), saliency=maps,
        saliency_positions=picks, images=part.pixels[picks],
        history=pd.DataFrame(history) if history is not None else None,
        inputs=inputs,
    )
