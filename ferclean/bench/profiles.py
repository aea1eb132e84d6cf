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

__all__ = ["CORE_SEEDS", "DEFAULT_RECIPE", "PROFILES", "PROTOCOLS", "REPLICA_LABEL",
           "SAMPLINGS", "VARIATIONS", "Cell", "Profile"]

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
#: The recipe of cells that name none, and of every run stored before recipes existed.
DEFAULT_RECIPE = "study"
#: Seeds of the cells that carry the conclusions (A against each cleaning, best model).
CORE_SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)


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
    recipe : str, default="study"
        The training recipe, a name in :data:`ferclean.learning.TRAINING_PRESETS`
        (``"study"``, ``"study-augmented"``, ``"vgg"``); the profile may override some of
        its fields (:attr:`Profile.recipe_overrides`).

    Examples
    --------
    >>> Cell("honest", "C+D", "ros", "cnn_lstm").key
    'honest|C+D|ros|cnn_lstm'
    >>> Cell("honest", "A", "none", "vgg", "vgg").key
    'honest|A|none|vgg|vgg'
    """

    protocol: str
    variation: str
    sampling: str
    model: str
    recipe: str = "study"

    @property
    def key(self) -> str:
        """``"protocol|variation|sampling|model"``, then ``"|recipe"`` unless it is
        ``"study"``: the cell's name in results files. Runs stored before recipes existed
        trained the study's recipe, so their keys name the same cells."""
        key = f"{self.protocol}|{self.variation}|{self.sampling}|{self.model}"
        return key if self.recipe == DEFAULT_RECIPE else f"{key}|{self.recipe}"

    @classmethod
    def from_run(cls, run: dict[str, Any]) -> Cell:
        """The cell of a stored run record (``recipe`` missing: the study's).

        Examples
        --------
        >>> Cell.from_run({"protocol": "honest", "variation": "A", "sampling": "none",
        ...                "model": "cnn_lstm", "seed": 0}).key
        'honest|A|none|cnn_lstm'
        """
        return cls(run["protocol"], run["variation"], run["sampling"], run["model"],
                   run.get("recipe") or DEFAULT_RECIPE)


@dataclass(frozen=True)
class Profile:
    """How big a run is: which cells, how many seeds, how much data, how many epochs.

    ``train_subset`` (training images drawn, class shares kept; ``None`` = all) and
    ``epochs`` make the quick profile fit a 2-core CPU; every output of a subset profile
    says so.

    ``epochs``, ``batch_size`` and ``learning_rate`` are those of the ``"study"`` recipe
    (the only one before recipes existed); the other recipes train with their presets'
    values unless ``recipe_overrides`` changes them. ``seed_overrides`` gives some cells
    more seeds than ``seeds`` (the cells that carry the conclusions get
    :data:`CORE_SEEDS`).

    Examples
    --------
    >>> quick = PROFILES["quick"]
    >>> quick.is_subset, len(quick.seeds), PROFILES["full"].is_subset
    (True, 3, False)
    >>> full = PROFILES["full"]
    >>> full.cells[0].key, full.seeds_of(full.cells[0])
    ('honest|A|none|vgg|vgg', (0, 1, 2, 3, 4))
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
    seed_overrides: dict[str, tuple[int, ...]] = field(default_factory=dict)
    recipe_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def is_subset(self) -> bool:
        """Whether the profile trains or evaluates on a subset of the images."""
        return self.train_subset is not None or self.eval_subset is not None

    def seeds_of(self, cell: Cell) -> tuple[int, ...]:
        """The seeds ``cell`` runs with: its entry in ``seed_overrides``, else ``seeds``.

        Examples
        --------
        >>> PROFILES["smoke"].seeds_of(PROFILES["smoke"].cells[0])
        (0,)
        """
        return tuple(self.seed_overrides.get(cell.key, self.seeds))

    def runs(self) -> list[tuple[Cell, int]]:
        """Every (cell, seed) of the profile, in the order the suite runs them.

        Cells keep their order of importance. Consecutive cells that are compared with
        each other (same protocol, sampling, model and recipe: variation A against each
        cleaning) form a block, run seed by seed: a run cut short still holds paired
        seeds of every variation of its first blocks rather than all seeds of a few.

        Examples
        --------
        >>> [f"{c.variation}|{s}" for c, s in PROFILES["quick"].runs()][:4]
        ['A|0', 'C+D|0', 'A|1', 'C+D|1']
        """
        order: list[tuple[Cell, int]] = []
        blocks: list[list[Cell]] = []
        for cell in self.cells:
            if blocks and _block_key(blocks[-1][0]) == _block_key(cell):
                blocks[-1].append(cell)
            else:
                blocks.append([cell])
        for block in blocks:
            seeds = list(dict.fromkeys(s for c in block for s in self.seeds_of(c)))
            order += [(c, s) for s in seeds for c in block if s in self.seeds_of(c)]
        return order

    def to_dict(self) -> dict[str, Any]:
        """The profile as results files record it: cells by key, plus ``is_subset``.

        Examples
        --------
        >>> PROFILES["smoke"].to_dict()["cells"]
        ['honest|A|none|cnn_lstm', 'seed-replica|A|ros|cnn_lstm']
        """
        data = asdict(replace(self, cells=()))
        data["cells"] = [c.key for c in self.cells]
        data["seed_overrides"] = {k: list(v) for k, v in self.seed_overrides.items()}
        data["n_runs"] = len(self.runs())
        data["is_subset"] = self.is_subset
        return data


def _block_key(cell: Cell) -> tuple[str, str, str, str]:
    """What cells compared with each other share: all but the variation."""
    return cell.protocol, cell.sampling, cell.model, cell.recipe


#: A net and the recipe it trains with.
Net = tuple[str, str]
VGG: Net = ("vgg", "vgg")
STUDY: Net = ("cnn_lstm", DEFAULT_RECIPE)
STUDY_AUGMENTED: Net = ("cnn_lstm", "study-augmented")
MHA: Net = ("cnn_mha", DEFAULT_RECIPE)
#: Variations that find label issues with folds inside Training: honest protocol only (the
#: replica has no Training split of its own to fold).
LABEL_VARIATIONS: tuple[str, ...] = ("no-label-issues", "relabel")


def _cells(protocol: str, variations: Iterable[str], samplings: Iterable[str],
           nets: Iterable[Net]) -> list[Cell]:
    return [Cell(protocol, v, s, model, recipe) for model, recipe in nets
            for s in samplings for v in variations]


def _unique(cells: Iterable[Cell]) -> tuple[Cell, ...]:
    """``cells`` without repeats, each where it first appears (its importance)."""
    return tuple(dict.fromkeys(cells))


def _profiles() -> dict[str, Profile]:
    every = list(VARIATIONS)
    replicable = [v for v in every if v not in LABEL_VARIATIONS]
    nets = [VGG, STUDY, STUDY_AUGMENTED, MHA]
    # Ordered by importance, so that a run cut short (or shards interrupted by a time
    # limit) still holds the core comparison: the reference net's A against every
    # cleaning first (five seeds), then the study's CNN-LSTM as the study trained it and
    # with the augmented recipe, the leak (the replica), then the rest of the grid.
    core = _cells("honest", every, ["none"], [VGG])
    full_cells = _unique(
        core
        + _cells("honest", every, ["none"], [STUDY])
        + _cells("honest", every, ["none"], [STUDY_AUGMENTED])
        + _cells("seed-replica", ["A", "C+D"], ["none", "ros"], [STUDY, VGG])
        + _cells("honest", ["A", "C+D"], ["none"], [MHA])
        + _cells("honest", every, ["ros", "smote", "class_weights"], nets)
        + _cells("honest", every, ["none"], [MHA])
        + _cells("seed-replica", replicable, list(SAMPLINGS), nets)
    )
    # What fits ~20 minutes on 2 CPU cores (a CNN-LSTM step there is ~0.7 s): the
    # cleaning effect (A vs C+D) and the leak (honest vs the replica), three seeds each.
    # No augmented-recipe cell: one run of it at these sizes took over three times a
    # study run here (augmentation and test-time flips on the CPU), which does not fit.
    quick_cells = (
        _cells("honest", ["A", "C+D"], ["none"], [STUDY])
        + _cells("seed-replica", ["A"], ["ros"], [STUDY])
    )
    # A few dozen steps per run: BatchNorm's running statistics must settle faster than
    # Keras' default momentum (0.99) allows, or evaluation sees untrained statistics.
    short_run = {"cnn_lstm": {"bn_momentum": 0.9}}
    return {
        "full": Profile("full", full_cells, epochs=60,
                        # same weights and arithmetic; twice as fast per step on an H100
                        model_kwargs={"cnn_lstm": {"lstm_unroll": 25}},
                        seed_overrides={c.key: CORE_SEEDS for c in core},
                        note="the study's full setting: all images; the study's recipe up "
                        "to 60 epochs with early stopping, the augmented recipes up to "
                        "their presets' 300; meant for a GPU"),
        "quick": Profile("quick", tuple(quick_cells), epochs=6, train_subset=1500,
                         eval_subset=600, model_kwargs=short_run,
                         note="SUBSET PROFILE for a 2-core CPU (one training step of the "
                         "CNN-LSTM takes ~0.7 s there): 3 cells, 1,500 training images "
                         "drawn with their class shares, 600 PrivateTest images drawn once "
                         "for every cell and seed (de-leaked against the raw Training), 6 "
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
