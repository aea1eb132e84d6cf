"""The outer training loop: batches, callbacks, best weights, live checkpoints.

:func:`train` feeds batches by indexing one uint8 array with a seeded permutation per
epoch (no per-image Python work), runs the callbacks (:class:`ReduceLROnPlateau`,
:class:`EarlyStopping`), keeps the best weights and, given ``out``, writes the best
checkpoint and the history as it goes. The numerics are the pure steps of
:mod:`ferclean.learning.training.steps`.

Given a seed, a run is deterministic on one machine: the seed makes the JAX keys (weight
initialisation, dropout) and the numpy generator (batch order).

Defaults mirror the study's Keras setup: Adam with learning rate 2e-3 (betas 0.9/0.999,
epsilon 1e-7 as Keras), batch 64, reduce-LR-on-plateau on the validation loss (factor
0.1, patience 2, min_delta 1e-4), early stopping (patience 5) restoring the best weights.
Other recipes (:mod:`~ferclean.learning.training.presets`) change the optimiser, the
schedule (cosine, constant, a warm-up), the monitored quantity (validation accuracy) and
add augmentation; the callbacks, early stopping and the best weights follow the monitor.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ferclean._outputs import dataset_inputs
from ferclean._progress import Progress
from ferclean._validation import check_dataset
from ferclean.dataset import EMOTIONS, FaceDataset
from ferclean.learning.augment import AugmentSpec
from ferclean.learning.training.checkpoints import (
    _prepare_run_folder,
    _write_history,
    save_checkpoint,
)
from ferclean.learning.training.config import EarlyStopping, ReduceLROnPlateau, TrainConfig
from ferclean.learning.training.model import _module, _trained
from ferclean.learning.training.result import TrainResult
from ferclean.learning.training.steps import (
    PRNG_IMPL,
    _jax,
    _with_learning_rate,
    create_train_state,
    eval_step,
    train_step,
    train_steps,
)
from ferclean.protocol import honest_splits

__all__ = ["train"]

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "time_s", "cpu_s",
)
_N_CLASSES = len(EMOTIONS)


# ---------------------------------------------------------------------- data
def _labelled(dataset: FaceDataset, role: str) -> FaceDataset:
    dataset = check_dataset(dataset, name=f"{role} dataset")
    unlabeled = int(np.count_nonzero(dataset.labels < 0))
    if unlabeled:
        raise ValueError(
            f"the {role} data has {unlabeled} unlabeled image(s) (label -1); "
            f"drop them first, e.g. ds.subset(ds.labels >= 0)"
        )
    return dataset


def _resolve_data(data: Any) -> tuple[FaceDataset, FaceDataset | None]:
    if isinstance(data, FaceDataset):
        train_ds, val_ds, _ = honest_splits(data)
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        train_ds, val_ds = data
    else:
        raise TypeError(
            "data must be a FaceDataset (Training trains, PublicTest validates) or a pair "
            f"(train_ds, val_ds); got {type(data).__name__}"
        )
    train_ds = _labelled(train_ds, "training")
    if len(train_ds) == 0:
        raise ValueError("the training data is empty")
    if val_ds is not None:
        val_ds = _labelled(val_ds, "validation")
        if len(val_ds) == 0:
            val_ds = None
    return train_ds, val_ds


def _class_weight_vector(spec: Any, train_ds: FaceDataset) -> np.ndarray:
    """Loss weight per label id; absent classes (and ``spec=None``) weigh 1."""
    weights = np.ones(_N_CLASSES, dtype=np.float32)
    if spec is None:
        return weights
    if spec == "balanced":
        # The protocol's class_weights, not a local compute_class_weight call: it also
        # refuses test images, whose label counts must not shape training.
        from ferclean.protocol import class_weights

        spec = class_weights(train_ds)
    for label, weight in spec.items():
        weights[int(label)] = float(weight)
    return weights


@dataclass(frozen=True)
class _Feed:
    """One epoch's batches: the arrays, and the call plan, the same every epoch."""

    pixels: np.ndarray
    labels: np.ndarray
    weights: np.ndarray
    batch_size: int
    n_steps: int
    #: (first step, number of steps) per call: fused chunks over the full batches, then
    #: single steps (the last, partial batch; every batch when not fusing).
    calls: tuple[tuple[int, int], ...]
    device_data: Any  # the arrays on the device for fused steps, or None
    #: the step's static options: augmentation and precision
    augment: AugmentSpec = AugmentSpec()
    compute_dtype: str = "float32"

    @classmethod
    def build(cls, train_ds: FaceDataset, config: TrainConfig, backend: str) -> _Feed:
        pixels = train_ds.pixels  # one uint8 array; batches are gathered from it by index
        labels = train_ds.labels.astype(np.int32)
        weights = _class_weight_vector(config.class_weight, train_ds)[labels]
        n = len(labels)
        batch_size = min(config.batch_size, n)
        n_steps = n // batch_size if config.drop_remainder else math.ceil(n / batch_size)
        steps_per_call = config.steps_per_call or (1 if backend == "cpu" else 50)
        fused = steps_per_call > 1 and n >= batch_size
        device_data = _device_training_data(pixels, labels, weights) if fused else None
        n_fused = (n // batch_size) if fused else 0
        calls = [(s, min(steps_per_call, n_fused - s)) for s in range(0, n_fused, steps_per_call)]
        calls += [(s, 1) for s in range(n_fused, n_steps)]
        return cls(pixels, labels, weights, batch_size, n_steps, tuple(calls), device_data,
                   AugmentSpec.of(config.augment), config.compute_dtype)

    @property
    def n_seen(self) -> int:
        """Images one epoch trains on (fewer than all with ``drop_remainder``)."""
        return min(self.n_steps * self.batch_size, len(self.labels))


def _device_training_data(pixels: np.ndarray, labels: np.ndarray,
                          weights: np.ndarray) -> dict[str, Any]:
    """The training arrays on the device, for fused steps to gather batches from.

    Padded to the next power of two, so that runs on datasets of similar size share one
    compiled call (the padding rows are never indexed).
    """
    import jax

    n = len(labels)
    pad = (1 << max(n - 1, 1).bit_length()) - n
    arrays = {"image": pixels, "label": labels.astype(np.int32),
              "weight": weights.astype(np.float32)}
    return jax.device_put({key: np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)])
                           for key, a in arrays.items()})


# ---------------------------------------------------------------------- one epoch
def _train_epoch(state: Any, feed: _Feed, perm: np.ndarray, dropout_key: Any, bar: Progress,
                 *, time_first: bool) -> tuple[Any, float, float, float]:
    """One pass over the training data: (state, loss, accuracy, first call's seconds or NaN)."""
    jax = _jax().jax
    wall0 = time.perf_counter()
    first_call_s = math.nan
    step_metrics = []
    for i, (step, count) in enumerate(feed.calls):
        idx = perm[step * feed.batch_size:(step + count) * feed.batch_size]
        if feed.device_data is not None and count * feed.batch_size == len(idx):
            index = idx.reshape(count, feed.batch_size).astype(np.int32)
            state, metrics = train_steps(state, feed.device_data, index, dropout_key,
                                         augment=feed.augment,
                                         compute_dtype=feed.compute_dtype)
        else:
            batch = {"image": feed.pixels[idx], "label": feed.labels[idx],
                     "weight": feed.weights[idx]}
            state, metrics = train_step(state, batch, dropout_key, augment=feed.augment,
                                        compute_dtype=feed.compute_dtype)
        if time_first and i == 0:
            jax.block_until_ready(state)  # times compilation + the first call, once a run
            first_call_s = time.perf_counter() - wall0
        step_metrics.append(metrics)
        if bar.enabled and i >= 2:
            # Count steps when they have run, not when they were queued; staying two
            # calls behind keeps the device busy while the host waits.
            jax.block_until_ready(step_metrics[i - 2])
            bar.update(feed.calls[i - 2][1])
    # One host transfer per epoch, so steps dispatch asynchronously.
    sums = jax.device_get(step_metrics)
    bar.update(feed.n_steps - bar.done)
    loss = float(sum(np.sum(m["loss_sum"]) for m in sums)) / feed.n_seen
    accuracy = float(sum(np.sum(m["correct"]) for m in sums)) / feed.n_seen
    return state, loss, accuracy, first_call_s


def _evaluate_state(state: Any, pixels: np.ndarray, labels: np.ndarray, batch: int,
                    crop: int | None = None) -> tuple[float, float]:
    """Mean loss and accuracy over a whole split, in padded fixed-size batches.

    Of the centre crops for a model trained on crops; without test-time augmentation.
    """
    n = len(labels)
    batch = min(batch, n)
    totals = []
    for start in range(0, n, batch):
        images, y = pixels[start:start + batch], labels[start:start + batch].astype(np.int32)
        weight = np.ones(len(y), np.float32)
        pad = batch - len(y)
        if pad:  # weight 0 on padding rows: one compiled shape for every batch
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.uint8)])
            y = np.concatenate([y, np.zeros(pad, np.int32)])
            weight = np.concatenate([weight, np.zeros(pad, np.float32)])
        totals.append(eval_step(state, {"image": images, "label": y, "weight": weight},
                                crop=crop))
    sums = {k: float(sum(np.asarray(t[k]) for t in totals)) for k in totals[0]}
    return sums["loss_sum"] / sums["count"], sums["correct"] / sums["count"]


def _epoch_line(row: Mapping[str, float], epochs: int) -> str:
    val = (f" val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.3f}"
           if math.isfinite(row["val_loss"]) else "")
    return (f"epoch {row['epoch']}/{epochs} loss {row['loss']:.4f} acc {row['accuracy']:.3f}"
            f"{val} lr {row['learning_rate']:.2g}")


# ---------------------------------------------------------------------- across epochs
def scheduled_lr(config: TrainConfig, epoch: int) -> float | None:
    """The learning rate of ``epoch`` (from 1) that the warm-up or the schedule fixes.

    Warm-up epochs ``e <= warmup_epochs`` train at ``learning_rate * e / (warmup + 1)``;
    then ``"cosine"`` decays from ``learning_rate`` (the first epoch after the warm-up) to
    ``min_lr`` (reached after the last epoch), ``"constant"`` keeps ``learning_rate``, and
    ``"plateau"`` returns None: the rate is the callback's.

    Examples
    --------
    >>> cfg = TrainConfig(schedule="cosine", epochs=5, warmup_epochs=1, learning_rate=1.0)
    >>> [round(scheduled_lr(cfg, e), 3) for e in range(1, 6)]
    [0.5, 1.0, 0.854, 0.5, 0.146]
    >>> scheduled_lr(TrainConfig(), 1) is None
    True
    """
    lr, warmup = config.learning_rate, config.warmup_epochs
    if epoch <= warmup:
        return lr * epoch / (warmup + 1)
    if config.schedule == "constant":
        return lr
    if config.schedule == "cosine":
        progress = (epoch - warmup - 1) / max(config.epochs - warmup, 1)
        return config.min_lr + (lr - config.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return None


class _Run:
    """What carries from epoch to epoch: callbacks, history, best weights, live files."""

    def __init__(self, config: TrainConfig, monitor: str, out: Path | None, state: Any) -> None:
        self.config, self.monitor, self.out = config, monitor, out
        self.reduce_lr = ReduceLROnPlateau(factor=config.lr_factor,
                                           patience=config.lr_patience,
                                           min_delta=config.lr_min_delta, min_lr=config.min_lr,
                                           mode=config.mode)
        self.stopper = EarlyStopping(patience=config.early_stopping_patience, mode=config.mode)
        self.history: list[dict[str, float]] = []
        # kept in Python too: the state holds it in float32
        first = scheduled_lr(config, 1)
        self.lr = config.learning_rate if first is None else first
        # Host copies: on GPU the step donates (reuses) the old state's buffers.
        self.best = _jax().jax.device_get((state.params, state.batch_stats))
        self.best_info: dict[str, Any] = {"epoch": 0}

    def end_epoch(self, state: Any, row: dict[str, float]) -> tuple[Any, bool]:
        """Record the epoch, save what improved, adapt the rate; return (state, stop)."""
        self.history.append(row)
        logger.info("%s", _epoch_line(row, self.config.epochs))
        epoch, value = row["epoch"], row[self.monitor]
        if not math.isfinite(value):
            logger.warning("epoch %d: %s is %s; stopping", epoch, self.monitor, value)
            return state, True
        if self.stopper.update(value, epoch):
            self.best = _jax().jax.device_get((state.params, state.batch_stats))
            self.best_info = self._info(row)
            if self.out is not None:
                save_checkpoint(self.out, _trained(self.config, *self.best),
                                config=self.config, info=self.best_info)
        if self.out is not None:
            _write_history(self.out, self.monitor, self.history)
        if self.stopper.should_stop:
            return state, True
        new_lr = scheduled_lr(self.config, epoch + 1)
        if new_lr is None and epoch <= self.config.warmup_epochs:
            new_lr = self.config.learning_rate  # warm-up over: the plateau starts at the top
        elif new_lr is None:
            new_lr = self.reduce_lr.update(value, self.lr)
            if new_lr != self.lr:
                logger.info("epoch %d: reducing learning rate to %.3g", epoch, new_lr)
        if new_lr != self.lr:
            state, self.lr = _with_learning_rate(state, new_lr), new_lr
        return state, False

    def _info(self, row: Mapping[str, float]) -> dict[str, Any]:
        return {"epoch": row["epoch"], "monitor": self.monitor, self.monitor: row[self.monitor],
                "val_accuracy": row["val_accuracy"]}

    def result(self, state: Any, first_step_s: float) -> TrainResult:
        if self.config.restore_best:
            weights, info = self.best, self.best_info
        else:
            weights, info = (state.params, state.batch_stats), self._info(self.history[-1])
        return TrainResult(
            model=_trained(self.config, *weights, info=info),
            history=pd.DataFrame(self.history, columns=list(HISTORY_COLUMNS)),
            config=self.config, best_epoch=self.stopper.best_epoch,
            stopped_early=self.stopper.should_stop, first_step_s=first_step_s,
            out=self.out, monitor=self.monitor,
        )


def train(
    data: FaceDataset | tuple[FaceDataset, FaceDataset | None],
    config: TrainConfig | None = None,
    *,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Train a registered model; return the best weights and the per-epoch history.

    Parameters
    ----------
    data : FaceDataset or (train_ds, val_ds)
        A whole dataset trains on Training and validates on PublicTest
        (:func:`~ferclean.protocol.honest_splits`); PrivateTest is not touched. A pair is
        used as given; ``val_ds=None`` monitors the training loss instead (not
        recommended). All images must be labelled.
    config : TrainConfig, default=None
        ``TrainConfig()`` when None.
    out : path, default=None
        If given, the best checkpoint (:func:`~ferclean.learning.save_checkpoint`) is
        written there whenever the monitored quantity improves, and ``history.json`` after
        every epoch, so an interrupted run leaves its best weights so far behind.
        :meth:`TrainResult.save` then adds the training curves.
    progress : bool, default=False
        Draw a progress bar per epoch and an epoch summary line on stderr.
    overwrite : bool, default=False
        Allow ``out`` to hold an earlier run's checkpoint, whose files are removed first.

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.learning.models import TINY
    >>> ds = demo_dataset(n_faces=100)
    >>> cfg = TrainConfig(model="cnn_mha", model_kwargs=TINY["cnn_mha"], epochs=1,
    ...                   batch_size=32)
    >>> result = train((ds.split("Training")[:64], ds.split("PublicTest")), cfg)
    >>> list(result.history.columns)[:5]
    ['epoch', 'loss', 'accuracy', 'val_loss', 'val_accuracy']
    >>> result.best_epoch
    1
    """
    config = (config or TrainConfig()).validate()
    train_ds, val_ds = _resolve_data(data)
    jax = _jax().jax
    if out is not None:
        out = Path(out)
        _prepare_run_folder(out, overwrite=overwrite, inputs=dataset_inputs(train_ds, val_ds))
    feed = _Feed.build(train_ds, config, jax.default_backend())
    init_key, dropout_key = jax.random.split(jax.random.key(config.seed, impl=PRNG_IMPL))
    state = create_train_state(_module(config.model, config.model_kwargs), config, init_key)
    order_rng = np.random.default_rng(config.seed)
    # without validation data the training loss (accuracy) stands in for the validation's
    monitor = config.monitor if val_ds is not None else config.monitor.removeprefix("val_")
    run = _Run(config, monitor, out, state)
    if run.lr != config.learning_rate:  # a warm-up's first epoch
        state = _with_learning_rate(state, run.lr)
    crop = AugmentSpec.of(config.augment).crop
    first_step_s = math.nan
    for epoch in range(1, config.epochs + 1):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        with Progress(feed.n_steps, f"epoch {epoch}/{config.epochs}", enabled=progress) as bar:
            state, loss, accuracy, first_call_s = _train_epoch(
                state, feed, order_rng.permutation(len(feed.labels)), dropout_key, bar,
                time_first=epoch == 1)
            row = {"epoch": epoch, "loss": loss, "accuracy": accuracy, "val_loss": math.nan,
                   "val_accuracy": math.nan, "learning_rate": run.lr}
            if val_ds is not None:
                row["val_loss"], row["val_accuracy"] = _evaluate_state(
                    state, val_ds.pixels, val_ds.labels, config.eval_batch_size, crop)
            row["time_s"] = time.perf_counter() - wall0
            row["cpu_s"] = time.process_time() - cpu0
            bar.desc = _epoch_line(row, config.epochs)
        if epoch == 1:
            first_step_s = first_call_s
        state, stop = run.end_epoch(state, row)
        if stop:
            break
    # the result remembers its data's sources: its save() never writes into them
    return dataclasses.replace(run.result(state, first_step_s),
                               inputs=dataset_inputs(train_ds, val_ds))
