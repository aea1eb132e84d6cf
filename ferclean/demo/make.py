"""Assembling the demo: plan the planted problems, draw, copy, shuffle, record the truth.

:func:`make_demo` draws FER-2013-like 48x48 grayscale faces procedurally (no download,
no model) in the seven FER expressions, then plants the problems that ferclean audits:

* exact duplicate groups (pixel-identical copies), some with conflicting labels, some
  spread over splits (train/test leakage), some both;
* near-duplicate pairs, one per edit kind in :data:`NEAR_EDITS` (JPEG re-encoding,
  brightness, contrast, gamma, noise, blur, shift, crop, rotation, mirror), again some
  with a different label or in another split;
* non-face images of the kinds in :data:`NON_FACE_KINDS` (text, blank frames, charts,
  gradients, noise, line drawings);
* FER-2013's class imbalance (disgust rare, happy common).

The returned :class:`DemoTruth` lists every planted item by row, so auditors can be
tested against it. ``make_demo`` verifies before returning that the only sets of
pixel-identical images in the dataset are exactly the planted exact groups, so that part
of the truth is exact by construction rather than by luck. Every near copy is also
checked to be nearer (mean absolute pixel difference, mirror undone) to its original
than to any other drawn face; an edit that fails is redrawn, so a few of the strongest
edits (4 px re-crops, +-30 brightness of high-contrast faces) are rarer than drawn.

The same seed gives byte-identical pixels, labels and splits on the same platform. JPEG
encoding and floating-point library functions may differ between platforms and library
versions, so do not compare checksums across machines.

Building one demo takes about 0.4 s for 300 faces and 1.4 s for 1500, and the package's
doctests alone ask for 73 demos, only two of them distinct; so each (seed, n_faces) with
an integer seed is built once per process (:func:`_build_cached`) and every call gets its
own copies of the arrays and tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, FaceDataset
from ferclean.demo.edits import _EDITS, NEAR_EDITS, _Nearness
from ferclean.demo.faces import _draw_faces
from ferclean.demo.nonfaces import _NON_FACES, NON_FACE_KINDS, _blank
from ferclean.demo.truth import DemoTruth, _group_table, _verify_exact_truth

__all__ = ["Demo", "demo_dataset", "make_demo"]

#: FER-2013 Training counts per emotion; the demo samples labels in these proportions.
_FER_TRAIN_COUNTS = np.array([3995, 436, 4097, 7215, 4830, 3171, 4965], dtype=np.float64)
_LABEL_SHARES = _FER_TRAIN_COUNTS / _FER_TRAIN_COUNTS.sum()
_SPLIT_SHARES = np.array([0.8, 0.1, 0.1])
#: Fewest base faces accepted: the planted groups need ~70 distinct source faces.
_MIN_FACES = 100
#: Fewest disgust faces, so a disgust class always exists even in small demos.
_MIN_DISGUST = 12
#: Split pairs cycled through by cross-split exact groups (codes into SPLITS).
_LEAK_PAIRS = ((0, 1), (0, 2), (1, 2))
#: Demos kept by the cache: the tests use about five (seed, n_faces); 1500 faces hold ~4 MB.
_CACHE_SIZE = 8

_S = IMAGE_SIZE


# ---------------------------------------------------------------------- public types
@dataclass(frozen=True, eq=False)  # eq=False: compare datasets with FaceDataset.equals
class Demo:
    """A demo dataset and the ground truth of its planted problems.

    Examples
    --------
    >>> demo = make_demo(n_faces=300)
    >>> demo.dataset.source, str(demo.dataset.ids[0])
    ('demo', 'demo-00000')
    """

    dataset: FaceDataset
    truth: DemoTruth


# ---------------------------------------------------------------------- entry points
def make_demo(seed: int = 0, n_faces: int = 1500) -> Demo:
    """Build the demo dataset and its ground truth.

    Parameters
    ----------
    seed : int, default=0
        Seed of the one random generator everything is drawn from.
    n_faces : int, default=1500
        Number of distinct drawn faces (at least 100). Planted copies and non-face
        images come on top, so the dataset is about 11% larger (1668 images for
        the defaults). The planted counts grow with ``n_faces`` and never fall below:
        12 exact groups, 5 near groups per edit kind and 6 images per non-face kind.

    Returns
    -------
    Demo
        ``dataset`` with rows ``0..N-1`` in split order (Training, PublicTest,
        PrivateTest, shuffled within each split), ids ``demo-00000``..., source
        ``"demo"``; and ``truth`` with the planted groups and non-faces by row.

    Notes
    -----
    Each (integer ``seed``, ``n_faces``) is drawn once per process and cached; every call
    returns new arrays and tables, so changing one demo never changes another.

    Examples
    --------
    >>> demo = make_demo(seed=1, n_faces=300)
    >>> ds = demo.dataset
    >>> ds.pixels.shape[1:], ds.pixels.dtype.name
    ((48, 48), 'uint8')
    >>> list(ds.split_counts())
    ['Training', 'PublicTest', 'PrivateTest']
    >>> make_demo(seed=1, n_faces=300).dataset.equals(ds)
    True
    """
    n_faces = int(n_faces)
    if n_faces < _MIN_FACES:
        raise ValueError(f"n_faces must be at least {_MIN_FACES}; got {n_faces}")
    # Only integer seeds name one stream for ever: a Generator or None would be drawn
    # from afresh on every call, so those demos are built and never cached.
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        return _build_cached(int(seed), n_faces).fresh()
    return _build(seed, n_faces).fresh()


def demo_dataset(seed: int = 0, n_faces: int = 1500) -> FaceDataset:
    """Return only the dataset of :func:`make_demo` (for ``ferclean audit --demo``).

    Examples
    --------
    >>> ds = demo_dataset(n_faces=300)
    >>> ds.source, bool(ds.has_labels)
    ('demo', True)
    """
    return make_demo(seed=seed, n_faces=n_faces).dataset


# ---------------------------------------------------------------------- building
class _Built(NamedTuple):
    """What a build produces: the final arrays (rows in dataset order) and truth tables."""

    pixels: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    ids: np.ndarray
    groups: pd.DataFrame
    non_faces: pd.DataFrame

    def fresh(self) -> Demo:
        """A new Demo on copies: FaceDataset keeps the arrays it is given, and callers
        (cleaning tests, resamplers) write into them."""
        dataset = FaceDataset(
            self.pixels.copy(),
            labels=self.labels.copy(),
            splits=self.splits.copy(),
            ids=self.ids.copy(),
            source="demo",
        )
        truth = DemoTruth(groups=self.groups.copy(), non_faces=self.non_faces.copy())
        return Demo(dataset=dataset, truth=truth)


@lru_cache(maxsize=_CACHE_SIZE)
def _build_cached(seed: int, n_faces: int) -> _Built:
    """:func:`_build`, once per (seed, n_faces); the cached arrays are read-only, so a
    caller that got them without :meth:`_Built.fresh` would fail loudly, not poison them."""
    built = _build(seed, n_faces)
    for array in (built.pixels, built.labels, built.splits, built.ids):
        array.setflags(write=False)
    return built


def _build(seed: Any, n_faces: int) -> _Built:
    """Draw the faces, plant every problem, shuffle, and check the exact truth.

    Every random draw comes from one generator in a fixed order (faces, exact groups,
    near pairs, non-faces, shuffle): the steps below must run in this order for a seed to
    keep giving the same demo.
    """
    rng = np.random.default_rng(seed)
    plan = _plan(n_faces)

    base_labels = _allocate(n_faces, _LABEL_SHARES, rng, floor={1: min(_MIN_DISGUST, n_faces // 8)})
    base_splits = _allocate(n_faces, _SPLIT_SHARES, rng)
    faces = _draw_faces(rng, base_labels)

    pool = _Pool(faces, base_labels, base_splits)
    # Every planted group gets its own source face, so no face sits in two groups.
    sources = _Sources(rng.permutation(n_faces), pool.splits)
    groups = _plant_exact(plan, pool, sources, rng)
    groups += _plant_near(plan["near_per_edit"], pool, sources, _Nearness(faces), rng)
    non_faces = _plant_non_faces(plan["nonface_per_kind"], pool, rng)
    return _arrange(pool, groups, non_faces, rng)


def _plant_exact(
    plan: dict[str, int], pool: _Pool, sources: _Sources, rng: np.random.Generator
) -> list[dict]:
    """Exact duplicate groups: (conflicting labels?, across splits?) per group."""
    variants = (
        [(False, False)] * plan["plain"]
        + [(True, False)] * plan["conflict"]
        + [(False, True)] * plan["leak"]
        + [(True, True)] * plan["both"]
    )
    groups: list[dict] = []
    n_leaky = 0
    for conflict, leak in variants:
        size = int(rng.choice([2, 3, 4], p=[0.6, 0.3, 0.1]))
        if leak:
            # Cycle the split pairs so every kind of leak (train-public, train-private,
            # public-private) is present. The source comes from the later (smaller) split
            # and the first copy goes to the earlier one, so leaks do not inflate the
            # test splits.
            first, second = _LEAK_PAIRS[n_leaky % len(_LEAK_PAIRS)]
            n_leaky += 1
            src = sources.take(lambda split, s=second: split == s)
            pool.splits[src] = second  # a no-op unless no face of that split was left
            copy_splits = [first] + [int(rng.choice([first, second])) for _ in range(size - 2)]
        else:
            src = sources.take()
            copy_splits = [int(pool.splits[src])] * (size - 1)
        src_label = int(pool.labels[src])
        if conflict:
            copy_labels = [_other_label(src_label, rng)] + [
                int(rng.choice(len(EMOTIONS), p=_LABEL_SHARES)) for _ in range(size - 2)
            ]
        else:
            copy_labels = [src_label] * (size - 1)
        members = [src]
        for label, split in zip(copy_labels, copy_splits, strict=True):
            members.append(pool.add(pool.pixels_of(src), label, split))
        groups.append(
            {"kind": "exact", "members": members, "edits": ["original"] + ["exact"] * (size - 1)}
        )
    return groups


def _plant_near(
    per_edit: int, pool: _Pool, sources: _Sources, nearness: _Nearness, rng: np.random.Generator
) -> list[dict]:
    """Near-duplicate pairs, ``per_edit`` for each edit kind: a third with the copy in
    another split, a third with another label, drawn independently so some are both."""
    groups: list[dict] = []
    for edit in NEAR_EDITS:
        leak_flags = rng.permutation(np.arange(per_edit) < round(per_edit / 3))
        conflict_flags = rng.permutation(np.arange(per_edit) < round(per_edit / 3))
        for leak, conflict in zip(leak_flags, conflict_flags, strict=True):
            # A leaking copy preferably goes from a test split into Training, again so
            # that leaks do not inflate the test splits.
            accept = (lambda split: split != 0) if leak else None
            src, copy = _near_copy(edit, sources, accept, nearness, rng)
            src_split = int(pool.splits[src])
            split = src_split
            if leak:
                others = [s for s in range(len(SPLITS)) if s != src_split]
                p_others = [0.75, 0.25] if src_split != 0 else [0.5, 0.5]
                split = int(rng.choice(others, p=p_others))
            label = int(pool.labels[src])
            if conflict:
                label = _other_label(label, rng)
            groups.append(
                {
                    "kind": "near",
                    "members": [src, pool.add(copy, label, split)],
                    "edits": ["original", edit],
                }
            )
    return groups


def _plant_non_faces(per_kind: int, pool: _Pool, rng: np.random.Generator) -> list[tuple[int, str]]:
    """Non-face images, ``per_kind`` of each kind, spread over splits like the faces, with
    labels drawn like FER's; returns (pool index, kind) of each."""
    kinds = np.repeat(np.arange(len(NON_FACE_KINDS)), per_kind)
    splits = _allocate(kinds.size, _SPLIT_SHARES, rng)
    labels = rng.choice(len(EMOTIONS), size=kinds.size, p=_LABEL_SHARES)
    blank_levels = rng.choice(256, size=per_kind, replace=False)
    members = []
    counters = dict.fromkeys(NON_FACE_KINDS, 0)
    for k, split, label in zip(kinds, splits, labels, strict=True):
        kind = NON_FACE_KINDS[int(k)]
        if kind == "blank":
            # Each blank frame gets its own grey level, so no two are identical.
            image = _blank(rng, int(blank_levels[counters[kind]]))
        else:
            image = _NON_FACES[kind](rng)
        counters[kind] += 1
        members.append((pool.add(image, int(label), int(split)), kind))
    return members


def _arrange(
    pool: _Pool, groups: list[dict], non_faces: list[tuple[int, str]], rng: np.random.Generator
) -> _Built:
    """Final order: Training, PublicTest, PrivateTest, shuffled within each split; the
    truth tables by final row, checked against the pixels."""
    pixels, labels, splits = pool.arrays()
    n = labels.size
    order = np.lexsort((rng.permutation(n), splits))
    row_of = np.empty(n, dtype=np.int64)
    row_of[order] = np.arange(n)
    pixels, labels, splits = pixels[order], labels[order], splits[order]
    truth = DemoTruth(
        groups=_group_table(groups, row_of, labels, splits),
        non_faces=pd.DataFrame(
            {
                "row": np.array([row_of[m] for m, _ in non_faces], dtype=np.int64),
                "kind": [kind for _, kind in non_faces],
            }
        ).sort_values("row", ignore_index=True),
    )
    _verify_exact_truth(pixels, truth)
    ids = np.array([f"demo-{r:05d}" for r in range(n)])
    return _Built(pixels, labels, splits, ids, truth.groups, truth.non_faces)


# ---------------------------------------------------------------------- planning
def _plan(n_faces: int) -> dict[str, int]:
    """Planted counts: FER-like rates at 1500 faces, scaled with ``n_faces``, with floors
    that keep every kind of problem present (several times over) in small demos."""
    s = n_faces / 1500
    return {
        "plain": max(4, round(14 * s)),
        "conflict": max(4, round(10 * s)),
        # At least 3 leaking groups so every split pair in _LEAK_PAIRS occurs.
        "leak": max(3, round(12 * s)),
        "both": max(1, round(4 * s)),
        "near_per_edit": max(5, round(6 * s)),
        "nonface_per_kind": max(6, round(8 * s)),
    }


def _allocate(
    n: int, shares: np.ndarray, rng: np.random.Generator, floor: dict[int, int] | None = None
) -> np.ndarray:
    """Exactly ``round(n * share)`` of each code (largest remainder), in random order.

    Exact counts rather than i.i.d. draws keep the class imbalance and split sizes the
    same for every seed, so tests on them cannot be flaky.
    """
    raw = n * shares
    counts = np.floor(raw).astype(np.int64)
    counts[np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]] += 1
    for code, least in (floor or {}).items():
        while counts[code] < least:
            counts[code] += 1
            counts[int(np.argmax(counts))] -= 1  # take from the largest class
    return rng.permutation(np.repeat(np.arange(len(shares)), counts)).astype(np.int8)


def _other_label(label: int, rng: np.random.Generator) -> int:
    """A label different from ``label``, drawn with FER's class shares."""
    p = _LABEL_SHARES.copy()
    p[label] = 0.0
    return int(rng.choice(len(EMOTIONS), p=p / p.sum()))


class _Pool:
    """Images in creation order: the base faces first, then appended copies."""

    def __init__(self, faces: np.ndarray, labels: np.ndarray, splits: np.ndarray) -> None:
        self.faces = faces
        self.labels = labels.astype(np.int8).copy()
        self.splits = splits.astype(np.int8).copy()
        self.extra: list[np.ndarray] = []
        self.extra_labels: list[int] = []
        self.extra_splits: list[int] = []

    def pixels_of(self, index: int) -> np.ndarray:
        # Sources are always base faces: copies are never copied again.
        return self.faces[index]

    def add(self, image: np.ndarray, label: int, split: int) -> int:
        self.extra.append(np.asarray(image, dtype=np.uint8))
        self.extra_labels.append(label)
        self.extra_splits.append(split)
        return len(self.faces) + len(self.extra) - 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pixels = np.concatenate([self.faces, np.stack(self.extra)]) if self.extra else self.faces
        labels = np.concatenate([self.labels, np.asarray(self.extra_labels, np.int8)])
        splits = np.concatenate([self.splits, np.asarray(self.extra_splits, np.int8)])
        return pixels, labels, splits


class _Sources:
    """Base faces not yet used as a source, in random order; each is handed out once."""

    def __init__(self, order: np.ndarray, splits: np.ndarray) -> None:
        self.queue = [int(i) for i in order]
        self.splits = splits

    def take(self, accept: Callable[[int], bool] | None = None) -> int:
        """The next face whose split ``accept`` accepts, else the next face at all."""
        if accept is not None:
            for k, face in enumerate(self.queue):
                if accept(int(self.splits[face])):
                    return self.queue.pop(k)
        if not self.queue:
            raise RuntimeError("demo: ran out of source faces; raise n_faces")
        return self.queue.pop(0)


def _near_copy(
    edit: str,
    sources: _Sources,
    accept: Callable[[int], bool] | None,
    nearness: _Nearness,
    rng: np.random.Generator,
) -> tuple[int, np.ndarray]:
    """Take sources until an edit of one passes the nearness check (a failed source is
    dropped rather than returned, which keeps the loop simple and is rare)."""
    while True:
        src = sources.take(accept)
        original = nearness.flat[src].reshape(_S, _S)
        for _ in range(5):  # a milder redraw of the edit almost always passes
            copy = _EDITS[edit](original, rng)
            if nearness.ok(src, copy, edit):
                return src, copy
