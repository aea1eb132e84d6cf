"""What a training run returns, and how it is written to a run folder."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ferclean._outputs import claim_dir, output_dir
from ferclean.learning.training.checkpoints import (
    CURVES_FILE,
    RUN_FILES,
    _write_history,
    save_checkpoint,
)
from ferclean.learning.training.config import TrainConfig
from ferclean.learning.training.model import TrainedModel

__all__ = ["TrainResult"]


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`ferclean.learning.train` returns.

    Attributes
    ----------
    model : TrainedModel
        The best epoch's weights (``restore_best=True``) or the last epoch's; its
        ``info`` holds that epoch, the monitored quantity and its value.
    history : DataFrame
        One row per epoch: ``epoch``, ``loss``, ``accuracy`` (training, dropout on, as
        Keras reports them), ``val_loss``, ``val_accuracy`` (NaN without validation
        data), ``learning_rate`` (used in that epoch), ``time_s`` (wall) and ``cpu_s``
        (process CPU time; the first epoch includes compilation).
    config : TrainConfig
    best_epoch : int
        Epoch with the best monitored value (:attr:`TrainConfig.monitor`: ``val_loss``
        by default, lowest; ``val_accuracy``, highest; ``loss`` or ``accuracy`` without
        validation data).
    stopped_early : bool
    first_step_s : float
        Wall time of the first step, i.e. mostly XLA compilation.
    out : Path or None
        Where ``train(..., out=...)`` wrote checkpoints and history while training.
    monitor : str, default="val_loss"
        What the callbacks watched: :attr:`TrainConfig.monitor` (``"val_loss"`` or
        ``"val_accuracy"``), or ``"loss"`` / ``"accuracy"`` without validation data.
    inputs : tuple of str, default=()
        Where the training data was read from: :meth:`save` never writes into them.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.learning import TrainConfig, train
    >>> from ferclean.learning.models import TINY
    >>> ds = demo_dataset(n_faces=100)
    >>> cfg = TrainConfig(model="cnn_mha", model_kwargs=TINY["cnn_mha"], epochs=1,
    ...                   batch_size=32)
    >>> result = train((ds.split("Training")[:64], ds.split("PublicTest")), cfg)
    >>> result.best_epoch, result.monitor, result.model.info["epoch"]
    (1, 'val_loss', 1)
    """

    model: TrainedModel
    history: pd.DataFrame
    config: TrainConfig
    best_epoch: int
    stopped_early: bool
    first_step_s: float
    out: Path | None = None
    monitor: str = "val_loss"
    inputs: tuple[str, ...] = ()

    def save(self, out: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the run into ``out``: checkpoint, ``history.json``, ``training_curves.png``.

        The checkpoint is :attr:`model` (:func:`ferclean.learning.save_checkpoint`, with
        the config and ``model.info``); every file is written atomically.

        Parameters
        ----------
        out : path
            Created if missing. Never the training data's source (:attr:`inputs`) or
            inside it, never a non-empty folder ferclean did not write.
        overwrite : bool, default=False
            Allow ``out`` to hold an earlier run, which the new one replaces as a unit.
            The folder this run wrote to while training (:attr:`out`) is always allowed:
            its files are rewritten in place.

        Returns
        -------
        Path
            ``out``.

        Raises
        ------
        FileExistsError
            If ``out`` holds another run's checkpoint and ``overwrite`` is False.
        ferclean._outputs.OutputError
            If ``out`` is a file, an input, or a folder that ferclean did not write.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from ferclean.demo import demo_dataset
        >>> from ferclean.learning import TrainConfig, train
        >>> from ferclean.learning.models import TINY
        >>> ds = demo_dataset(n_faces=100)
        >>> cfg = TrainConfig(model="cnn_mha", model_kwargs=TINY["cnn_mha"], epochs=1,
        ...                   batch_size=32)
        >>> result = train((ds.split("Training")[:64], ds.split("PublicTest")), cfg)
        >>> out = result.save(pathlib.Path(tempfile.mkdtemp()) / "run")
        >>> sorted(p.name for p in out.iterdir())  # doctest: +NORMALIZE_WHITESPACE
        ['.ferclean-output', 'checkpoint.json', 'history.json', 'params.msgpack',
         'training_curves.png']
        """
        out = Path(out)
        own = self.out is not None and out.resolve() == Path(self.out).resolve()
        if own:  # rewriting our own files in place keeps them until replaced
            claim_dir(out, what="ferclean training run", inputs=self.inputs,
                      known=RUN_FILES, resume=True)
            self._write(out)
        else:  # a new folder, or an earlier run's replaced as a unit
            with output_dir(out, what="ferclean training run", inputs=self.inputs,
                            overwrite=overwrite, known=RUN_FILES) as tmp:
                self._write(tmp)
        return out

    def _write(self, folder: Path) -> None:
        from ferclean.learning.plots import plot_training_curves

        save_checkpoint(folder, self.model, config=self.config, info=self.model.info)
        _write_history(folder, self.monitor, self.history.to_dict(orient="records"))
        plot_training_curves(self.history, path=folder / CURVES_FILE)
