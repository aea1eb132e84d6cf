"""What the suite runs: cells (protocol, variation, sampling, model) and profiles (how big).

* Variations are the study's Table 2 — A ``raw``, B ``dedup``, C ``no-conflicts``,
  D ``no-outliers``, C+D ``seed-final`` — plus ferclean's ``strict``.
* Sampling: ``none``, ``ros`` (random oversampling), ``smote``, ``class_weights``.
* Protocols: ``honest`` (the official splits) and ``seed-replica``, A REPLICA OF A FLAWED
  PROTOCOL (resample, then split at random), kept to measure how much it inflates accuracy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

__all__ = ["PROFILES", "PROTOCOLS", "REPLICA_LABEL", "SAMPLINGS", "VARIATIONS", "Cell",
           "Profile"]

#: Cleaning variation name -> the :class:`ferclean.cleaning.CleaningPlan` preset it runs.
VARIATIONS: dict[str, str] = {
    "A": "raw", "B": "dedup", "C": "no-conflicts", "D": "no-outliers", "C+D": "seed-final",
    "strict": "strict",
    # label issues found on Training only, out-of-fold probabilities from folds inside it
    "no-label-issues": "no-label-issues", "relabel": "relabel",
}
SAMPLINGS: tuple[str, ...] = ("none", "ros", "smote", "class_weights")
PROTOCOLS: tuple[str, ...] = ("honest", "seed-replica")
REPLICA_LABEL = "seed-replica (REPLICA OF A FLAWED PROTOCOL: resample, then split)"


@dataclass(frozen=True)
class Cell:
    """One configuration of the suite (run once per seed).

    Parameters
    ----------
    protocol : {"honest", "seed-replica"}
    variation : str
        A key of :data:`VARIATIONS`.
    sampling : {"none", "ros", "smote", "class_weights"}
    model : str
        A model name known to :mod:`ferclean.learning`.

    Examples
    --------
    >>> Cell("honest", "C+D", "ros", "cnn_lstm").key
    'honest|C+D|ros|cnn_lstm'
    """

    protocol: str
    variation: str
    sampling: str
    model: str

    @property
    def key(self) -> str:
        """``"protocol|variation|sampling|model"``, the cell's name in results files."""
        return f"{self.protocol}|{self.variation}|{self.sampling}|{self.model}"


@dataclass(frozen=True)
class Profile:
    """How big a run is: which cells, how many seeds, how much data, how many epochs.

    ``train_subset`` (training images drawn, class shares kept; ``None`` = all) and
    ``epochs`` make the quick profile fit a 2-core CPU; every output of a subset profile
    says so.

    Examples
    --------
    >>> quick = PROFILES["quick"]
    >>> quick.is_subset, len(quick.seeds), PROFILES["full"].is_subset
    (True, 3, False)
    """

    name: str
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    train_subset: int | None = None
    eval_subset: int | None = None
    replica_test_fraction: float = 0.1
    model_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    note: str = ""

    @property
    def is_subset(self) -> bool:
        """Whether the profile trains or evaluates on a subset of the images."""
        return self.train_subset is not None or self.eval_subset is not None

    def to_dict(self) -> dict[str, Any]:
        """The profile as results files record it: cells by key, plus ``is_subset``.

        Examples
        --------
        >>> PROFILES["smoke"].to_dict()["cells"]
        ['honest|A|none|cnn_lstm', 'seed-replica|A|ros|cnn_lstm']
        """
        data = asdict(replace(self, cells=()))
        data["cells"] = [c.key for c in self.cells]
        data["is_subset"] = self.is_subset
        return data


def _cells(protocol: str, variations: Iterable[str], samplings: Iterable[str],
           models: Iterable[str]) -> list[Cell]:
    return [Cell(protocol, v, s, m) for m in models for v in variations for s in samplings]


def _profiles() -> dict[str, Profile]:
    every = list(VARIATIONS)
    # Both profiles are ordered by importance, so that a run cut short (or shards
    # interrupted by a time limit) still holds the core comparison.
    full_cells = (
        _cells("honest", every, ["none"], ["cnn_lstm"])
        + _cells("seed-replica", ["A", "C+D"], ["none", "ros"], ["cnn_lstm"])
        + _cells("honest", ["A", "C+D"], ["none"], ["cnn_mha"])
        + _cells("honest", every, ["ros", "smote", "class_weights"], ["cnn_lstm"])
    )
    # What fits ~20 minutes on 2 CPU cores (a CNN-LSTM step there is ~0.7 s): the
    # cleaning effect (A vs C+D) and the leak (honest vs the replica), three seeds each.
    quick_cells = (
        _cells("honest", ["A", "C+D"], ["none"], ["cnn_lstm"])
        + _cells("seed-replica", ["A"], ["ros"], ["cnn_lstm"])
    )
    # A few dozen steps per run: BatchNorm's running statistics must settle faster than
    # Keras' default momentum (0.99) allows, or evaluation sees untrained statistics.
    short_run = {"cnn_lstm": {"bn_momentum": 0.9}}
    return {
        "full": Profile("full", tuple(full_cells), epochs=60,
                        # same weights and arithmetic; twice as fast per step on an H100
                        model_kwargs={"cnn_lstm": {"lstm_unroll": 25}},
                        note="the study's full setting: all images, up to 60 epochs with "
                        "early stopping; meant for a GPU"),
        "quick": Profile("quick", tuple(quick_cells), epochs=6, train_subset=1500,
                         eval_subset=600, model_kwargs=short_run,
                         note="SUBSET PROFILE for a 2-core CPU (one training step of the "
                         "CNN-LSTM takes ~0.7 s there): 3 cells, 1,500 training images "
                         "drawn with their class shares, 600 evaluation images per set, 6 "
                         "epochs, BatchNorm momentum 0.9. Numbers are far below full-data "
                         "accuracy and only comparable within this profile; the full "
                         "profile runs every cell"),
        "smoke": Profile("smoke", (Cell("honest", "A", "none", "cnn_lstm"),
                                   Cell("seed-replica", "A", "ros", "cnn_lstm")),
                         seeds=(0,), epochs=1, batch_size=32, train_subset=40,
                         eval_subset=100, model_kwargs=short_run,
                         note="SMOKE TEST: tiny subset, one epoch"),
    }


#: The suite's profiles by name: ``"full"`` (a GPU), ``"quick"`` (a 2-core CPU, subset),
#: ``"smoke"`` (a tiny check that everything runs).
PROFILES: dict[str, Profile] = _profiles()
