"""A built-in, deterministic demo dataset with planted problems and exact ground truth.

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
"""

from __future__ import annotations

import io
import json
import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ferclean.dataset import EMOTIONS, IMAGE_SIZE, SPLITS, FaceDataset

__all__ = [
    "NEAR_EDITS",
    "NON_FACE_KINDS",
    "Demo",
    "DemoTruth",
    "demo_dataset",
    "make_demo",
]

#: Edit kinds used to make near-duplicate copies, in the order they are planted.
NEAR_EDITS: tuple[str, ...] = (
    "jpeg",
    "brightness",
    "contrast",
    "gamma",
    "noise",
    "blur",
    "shift",
    "crop",
    "rotate",
    "flip",
)
#: Kinds of planted non-face images.
NON_FACE_KINDS: tuple[str, ...] = ("text", "blank", "chart", "gradient", "noise", "drawing")

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

_S = IMAGE_SIZE
_GROUP_COLUMNS = ["group", "kind", "rows", "edits", "labels", "splits", "conflict", "cross_split"]


# ---------------------------------------------------------------------- public types
@dataclass(frozen=True, eq=False)  # eq=False: DataFrames have no boolean ==, nor a hash
class DemoTruth:
    """Ground truth of the problems planted in a demo dataset.

    Parameters
    ----------
    groups : DataFrame
        One row per planted duplicate group, with columns ``group`` (int id), ``kind``
        (``'exact'`` or ``'near'``), ``rows`` (sorted tuple of dataset rows), ``edits``
        (tuple aligned with ``rows``: ``'original'`` for the source image, ``'exact'``
        for a pixel-identical copy, else the :data:`NEAR_EDITS` kind of the copy),
        ``labels`` (tuple of label ids aligned with ``rows``), ``splits`` (tuple of split
        names aligned with ``rows``), ``conflict`` (labels differ) and ``cross_split``
        (splits differ).
    non_faces : DataFrame
        One row per planted non-face image, with columns ``row`` and ``kind`` (one of
        :data:`NON_FACE_KINDS`), sorted by row.

    Examples
    --------
    >>> truth = make_demo(n_faces=300).truth
    >>> sorted(truth.groups.kind.unique())
    ['exact', 'near']
    >>> all(len(g) >= 2 for g in truth.exact_groups())
    True
    """

    groups: pd.DataFrame
    non_faces: pd.DataFrame

    def exact_groups(self) -> list[frozenset[int]]:
        """Rows of each planted group of pixel-identical images.

        Examples
        --------
        >>> groups = make_demo(n_faces=300).truth.exact_groups()
        >>> len(groups) >= 12 and all(isinstance(r, int) for g in groups for r in g)
        True
        """
        return self._select(self.groups.kind == "exact")

    def near_groups(self, edit: str | None = None) -> list[frozenset[int]]:
        """Rows of each planted near-duplicate group (original plus edited copy).

        Parameters
        ----------
        edit : str, default=None
            Only groups whose copy was made with this :data:`NEAR_EDITS` kind.

        Examples
        --------
        >>> truth = make_demo(n_faces=300).truth
        >>> len(truth.near_groups("flip")) >= 5
        True
        >>> sum(len(truth.near_groups(e)) for e in NEAR_EDITS) == len(truth.near_groups())
        True
        """
        mask = self.groups.kind == "near"
        if edit is not None:
            if edit not in NEAR_EDITS:
                raise ValueError(f"unknown edit {edit!r}; expected one of {', '.join(NEAR_EDITS)}")
            mask &= self.groups.edits.map(lambda edits: edit in edits)
        return self._select(mask)

    def conflict_groups(self, kind: str = "exact") -> list[frozenset[int]]:
        """Planted groups whose images carry more than one label.

        Parameters
        ----------
        kind : {'exact', 'near', 'all'}, default='exact'

        Examples
        --------
        >>> truth = make_demo(n_faces=300).truth
        >>> len(truth.conflict_groups()) >= 4 and len(truth.conflict_groups("near")) > 0
        True
        """
        return self._select(self._kind_mask(kind) & self.groups.conflict)

    def leak_groups(self, kind: str = "exact") -> list[frozenset[int]]:
        """Planted groups whose images lie in more than one split.

        Parameters
        ----------
        kind : {'exact', 'near', 'all'}, default='exact'

        Examples
        --------
        >>> truth = make_demo(n_faces=300).truth
        >>> len(truth.leak_groups()) >= 4 and len(truth.leak_groups("near")) > 0
        True
        """
        return self._select(self._kind_mask(kind) & self.groups.cross_split)

    def non_face_rows(self, kind: str | None = None) -> frozenset[int]:
        """Rows of the planted non-face images, optionally of one kind only.

        Examples
        --------
        >>> truth = make_demo(n_faces=300).truth
        >>> len(truth.non_face_rows("chart")) >= 6
        True
        """
        table = self.non_faces
        if kind is not None:
            if kind not in NON_FACE_KINDS:
                raise ValueError(
                    f"unknown non-face kind {kind!r}; expected one of {', '.join(NON_FACE_KINDS)}"
                )
            table = table[table.kind == kind]
        return frozenset(int(r) for r in table.row)

    def to_json(self) -> str:
        """The truth as JSON text: ``{"groups": [...], "non_faces": [...]}``, one object
        per table row (tuples become lists). :meth:`from_json` reads it back.

        Examples
        --------
        >>> truth = make_demo(n_faces=300).truth
        >>> again = DemoTruth.from_json(truth.to_json())
        >>> again.exact_groups() == truth.exact_groups()
        True
        """
        payload = {
            "groups": [
                {
                    "group": int(g.group),
                    "kind": str(g.kind),
                    "rows": [int(r) for r in g.rows],
                    "edits": list(g.edits),
                    "labels": [int(v) for v in g.labels],
                    "splits": list(g.splits),
                    "conflict": bool(g.conflict),
                    "cross_split": bool(g.cross_split),
                }
                for g in self.groups.itertuples(index=False)
            ],
            "non_faces": [
                {"row": int(r), "kind": str(k)}
                for r, k in zip(self.non_faces.row, self.non_faces.kind, strict=True)
            ],
        }
        return json.dumps(payload, indent=1)

    @classmethod
    def from_json(cls, text: str) -> DemoTruth:
        """Read the truth written by :meth:`to_json`."""
        payload = json.loads(text)
        groups = pd.DataFrame.from_records(payload["groups"], columns=_GROUP_COLUMNS)
        for column in ("rows", "edits", "labels", "splits"):
            groups[column] = groups[column].map(tuple)
        groups = groups.astype({"group": np.int64, "conflict": bool, "cross_split": bool})
        non_faces = pd.DataFrame.from_records(payload["non_faces"], columns=["row", "kind"])
        return cls(groups=groups, non_faces=non_faces.astype({"row": np.int64}))

    # ------------------------------------------------------------------ helpers
    def _kind_mask(self, kind: str) -> pd.Series:
        if kind == "all":
            return pd.Series(True, index=self.groups.index)
        if kind not in ("exact", "near"):
            raise ValueError(f"unknown group kind {kind!r}; expected 'exact', 'near' or 'all'")
        return self.groups.kind == kind

    def _select(self, mask: pd.Series) -> list[frozenset[int]]:
        return [frozenset(int(r) for r in rows) for rows in self.groups.rows[mask]]


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
    rng = np.random.default_rng(seed)
    plan = _plan(n_faces)

    base_labels = _allocate(n_faces, _LABEL_SHARES, rng, floor={1: min(_MIN_DISGUST, n_faces // 8)})
    base_splits = _allocate(n_faces, _SPLIT_SHARES, rng)
    faces = _draw_faces(rng, base_labels)

    pool = _Pool(faces, base_labels, base_splits)
    # Every planted group gets its own source face, so no face sits in two groups.
    sources = _Sources(rng.permutation(n_faces), pool.splits)
    groups: list[dict] = []

    # ---- exact duplicate groups: (conflicting labels?, across splits?) per group
    variants = (
        [(False, False)] * plan["plain"]
        + [(True, False)] * plan["conflict"]
        + [(False, True)] * plan["leak"]
        + [(True, True)] * plan["both"]
    )
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

    # ---- near-duplicate pairs: a third with the copy in another split, a third with
    # another label, drawn independently so some are both.
    per_edit = plan["near_per_edit"]
    nearness = _Nearness(faces)
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

    # ---- non-face images, spread over splits like the faces, labels drawn like FER's
    nonface_kinds = np.repeat(np.arange(len(NON_FACE_KINDS)), plan["nonface_per_kind"])
    nonface_splits = _allocate(nonface_kinds.size, _SPLIT_SHARES, rng)
    nonface_labels = rng.choice(len(EMOTIONS), size=nonface_kinds.size, p=_LABEL_SHARES)
    blank_levels = rng.choice(256, size=plan["nonface_per_kind"], replace=False)
    nonface_members = []
    counters = dict.fromkeys(NON_FACE_KINDS, 0)
    for k, split, label in zip(nonface_kinds, nonface_splits, nonface_labels, strict=True):
        kind = NON_FACE_KINDS[int(k)]
        if kind == "blank":
            # Each blank frame gets its own grey level, so no two are identical.
            image = _blank(rng, int(blank_levels[counters[kind]]))
        else:
            image = _NON_FACES[kind](rng)
        counters[kind] += 1
        nonface_members.append((pool.add(image, int(label), int(split)), kind))

    # ---- final order: Training, PublicTest, PrivateTest; shuffled within each split
    pixels, labels, splits = pool.arrays()
    n = labels.size
    order = np.lexsort((rng.permutation(n), splits))
    row_of = np.empty(n, dtype=np.int64)
    row_of[order] = np.arange(n)
    pixels, labels, splits = pixels[order], labels[order], splits[order]

    dataset = FaceDataset(
        pixels,
        labels=labels,
        splits=splits,
        ids=np.array([f"demo-{r:05d}" for r in range(n)]),
        source="demo",
    )
    truth = DemoTruth(
        groups=_group_table(groups, row_of, labels, splits),
        non_faces=pd.DataFrame(
            {
                "row": np.array([row_of[m] for m, _ in nonface_members], dtype=np.int64),
                "kind": [kind for _, kind in nonface_members],
            }
        ).sort_values("row", ignore_index=True),
    )
    _verify_exact_truth(dataset.pixels, truth)
    return Demo(dataset=dataset, truth=truth)


def demo_dataset(seed: int = 0, n_faces: int = 1500) -> FaceDataset:
    """Return only the dataset of :func:`make_demo` (for ``ferclean audit --demo``).

    Examples
    --------
    >>> ds = demo_dataset(n_faces=300)
    >>> ds.source, bool(ds.has_labels)
    ('demo', True)
    """
    return make_demo(seed=seed, n_faces=n_faces).dataset


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


class _Nearness:
    """Checks that an edited copy is nearer to its source than to any other base face.

    Distances are mean absolute pixel differences (MAD). The edit ranges are fixed by
    what real duplicates look like, and a few strong edits (a 4 px re-crop of a
    high-contrast face, +30 brightness) can land as far from the source as the closest
    *other* drawn face; such a copy would be no near duplicate at all, so it is redrawn.
    """

    #: A copy must be this much nearer to its source than to every other face.
    margin = 0.9

    def __init__(self, faces: np.ndarray) -> None:
        self.flat = faces.reshape(len(faces), -1)
        self.means = self.flat.mean(axis=1)

    def ok(self, source: int, copy: np.ndarray, edit: str) -> bool:
        if np.array_equal(copy.reshape(-1), self.flat[source]):
            return False  # an exact duplicate, not a near one
        # A mirror copy is compared unmirrored (then it is its source: trivially near).
        probe = (copy[:, ::-1] if edit == "flip" else copy).reshape(-1).astype(np.int16)
        to_source = float(np.abs(probe - self.flat[source]).mean())
        # MAD >= |difference of means|, so only faces with close means can be nearer.
        close = np.flatnonzero(np.abs(self.means - probe.mean()) < to_source / self.margin)
        close = close[close != source]
        if close.size == 0:
            return True
        return bool(np.abs(self.flat[close] - probe).mean(axis=1).min() * self.margin > to_source)


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


def _group_table(
    groups: list[dict], row_of: np.ndarray, labels: np.ndarray, splits: np.ndarray
) -> pd.DataFrame:
    """Truth table of the planted groups, members sorted by final row."""
    records = []
    for g in groups:
        pairs = sorted(zip((int(row_of[m]) for m in g["members"]), g["edits"], strict=True))
        rows = tuple(r for r, _ in pairs)
        group_labels = tuple(int(labels[r]) for r in rows)
        group_splits = tuple(SPLITS[int(splits[r])] for r in rows)
        records.append(
            {
                "kind": g["kind"],
                "rows": rows,
                "edits": tuple(e for _, e in pairs),
                "labels": group_labels,
                "splits": group_splits,
                "conflict": len(set(group_labels)) > 1,
                "cross_split": len(set(group_splits)) > 1,
            }
        )
    table = pd.DataFrame.from_records(records, columns=_GROUP_COLUMNS[1:])
    # Exact groups first, then near groups; each by first row, so ids read in row order.
    table["_order"] = (table.kind != "exact").astype(int)
    table["_first"] = table.rows.map(lambda r: r[0])
    table = table.sort_values(["_order", "_first"], ignore_index=True)
    table.insert(0, "group", np.arange(len(table), dtype=np.int64))
    return table[_GROUP_COLUMNS]


def _verify_exact_truth(pixels: np.ndarray, truth: DemoTruth) -> None:
    """Fail loudly unless the pixel-identical sets are exactly the planted exact groups."""
    by_bytes: dict[bytes, list[int]] = {}
    for row, image in enumerate(pixels):
        by_bytes.setdefault(image.tobytes(), []).append(row)
    found = {frozenset(rows) for rows in by_bytes.values() if len(rows) > 1}
    planted = set(truth.exact_groups())
    if found != planted:  # not `assert`: must also hold under python -O
        raise RuntimeError(
            f"demo truth is inexact: {len(found - planted)} unplanted identical sets, "
            f"{len(planted - found)} planted groups not identical"
        )


# ---------------------------------------------------------------------- faces
# Expression geometry per label, in FER order. Brow heights are in units of the face
# half-height (negative = up), mouth width in units of the face half-width, other mouth
# values in pixels (curve > 0 smiles, < 0 frowns; tilt raises one corner, the sneer).
_EXPRESSION_PARAMS = (
    "eye_open",
    "brow_in",
    "brow_out",
    "mouth_w",
    "curve",
    "open_up",
    "open_dn",
    "tilt",
    "teeth",
)
# fmt: off
_EXPRESSIONS = np.array(
    [
        # eye_open brow_in brow_out mouth_w curve open_up open_dn tilt  teeth
        [0.55, -0.24, -0.44, 0.30, -1.8, 0.0, 0.0, 0.0, 0.0],  # angry: inner brows down
        [0.35, -0.27, -0.37, 0.30, -0.8, 0.0, 0.5, 2.6, 0.0],  # disgust: sneer, squint
        [1.05, -0.50, -0.38, 0.34, -0.8, 1.0, 1.6, 0.0, 0.0],  # fear: wide eyes, raised inner
        [0.40, -0.40, -0.41, 0.42, 3.2, 0.0, 2.6, 0.0, 1.0],  # happy: smile, narrow eyes
        [0.55, -0.49, -0.33, 0.30, -3.0, 0.0, 0.0, 0.0, 0.0],  # sad: raised inner, frown
        [1.20, -0.56, -0.53, 0.17, 0.0, 3.2, 3.2, 0.0, 0.0],  # surprise: high brows, 'O'
        [0.75, -0.40, -0.41, 0.30, 0.0, 0.0, 0.0, 0.0, 0.0],  # neutral: flat mouth
    ],
    dtype=np.float32,
)
# fmt: on


def _soft(d: np.ndarray, width: float = 1.0) -> np.ndarray:
    """Anti-aliased inside mask from a signed distance in px (negative inside)."""
    return np.clip(0.5 - d / width, 0.0, 1.0)


def _blend(img: np.ndarray, value: np.ndarray | float, alpha: np.ndarray) -> np.ndarray:
    return img + alpha * (value - img)


def _col(x: np.ndarray) -> np.ndarray:
    """Per-image parameters as (n, 1, 1) float32 so they broadcast over the grid."""
    return np.asarray(x, dtype=np.float32)[:, None, None]


def _smooth_basis(nodes: int) -> np.ndarray:
    """(48, nodes) Gaussian interpolation matrix: B @ G @ B.T turns a nodes x nodes grid
    of random values into a smooth 48x48 field far cheaper than filtering 48x48 noise."""
    pos = np.linspace(-0.5, nodes - 0.5, _S)
    w = np.exp(-0.5 * ((pos[:, None] - np.arange(nodes)[None, :]) / 0.7) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _texture(rng: np.random.Generator, n: int) -> np.ndarray:
    """Per-image low-frequency texture, unit std, at two scales.

    This is what makes every drawn face a different *image*: two faces with the same
    expression and similar geometry still differ by tens of grey levels of smooth
    structure, so near-duplicate detectors must not match them. The texture is coarse
    (node spacing 6-12 px) so that a shifted or re-cropped copy keeps most of it and
    stays close to its original.
    """
    out = np.zeros((n, _S, _S), np.float32)
    for nodes, weight in ((4, 1.0), (9, 0.8)):
        basis = _smooth_basis(nodes)
        grid = rng.standard_normal((n, nodes, nodes), dtype=np.float32)
        out += weight * (basis @ grid @ basis.T)
    out -= out.mean(axis=(1, 2), keepdims=True)
    out /= out.std(axis=(1, 2), keepdims=True) + 1e-6
    return out


def _draw_faces(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Draw one face per label, all at once on an (n, 48, 48) grid."""
    n = labels.size
    u01 = lambda lo, hi: _col(rng.uniform(lo, hi, n))  # noqa: E731 - terse per-face draws
    expr = _EXPRESSIONS[labels.astype(np.int64)]
    jitter = rng.normal(0.0, 1.0, size=expr.shape).astype(np.float32)
    p = {name: _col(expr[:, i]) for i, name in enumerate(_EXPRESSION_PARAMS)}
    # Individual variation within an expression (kept smaller than the between-
    # expression differences so expressions stay readable).
    p["eye_open"] = p["eye_open"] * (1 + 0.12 * _col(jitter[:, 0]))
    p["brow_in"] = p["brow_in"] + 0.025 * _col(jitter[:, 1])
    p["brow_out"] = p["brow_out"] + 0.025 * _col(jitter[:, 2])
    p["mouth_w"] = p["mouth_w"] * (1 + 0.08 * _col(jitter[:, 3]))
    p["curve"] = p["curve"] * (1 + 0.2 * _col(jitter[:, 4]))
    happy_open = _col(rng.uniform(0.0, 1.0, n) < 0.6)  # some smiles closed, some grins
    p["open_dn"] = (
        p["open_dn"] * np.where(p["teeth"] > 0, happy_open, 1.0) * (1 + 0.15 * _col(jitter[:, 5]))
    )
    p["open_up"] = p["open_up"] * (1 + 0.15 * _col(jitter[:, 6]))
    sneer_side = _col(rng.choice([-1.0, 1.0], n))

    # ---- pose: face centre, size and in-plane rotation
    yy, xx = np.mgrid[0:_S, 0:_S].astype(np.float32)
    cx, cy = 23.5 + u01(-3.0, 3.0), 25.0 + u01(-2.5, 2.5)
    a = u01(14.5, 18.5)  # face half-width
    b = a * u01(1.18, 1.34)  # face half-height
    theta = np.deg2rad(u01(-9.0, 9.0))
    cos, sin = np.cos(theta), np.sin(theta)
    dx, dy = xx - cx, yy - cy
    u = cos * dx + sin * dy  # face frame: u to the right, v down
    v = cos * dy - sin * dx
    au = np.abs(u)  # eyes and brows are mirror images: draw one side, reflect

    # ---- background with a linear lighting ramp
    skin = u01(95, 205)
    # Background relative to the skin: never a huge step at the face outline, which
    # would make a shifted or re-cropped copy as far from its original as another face.
    bg = np.clip(skin + u01(-65, 65), 35, 225)
    img = bg + u01(-1.6, 1.6) * (xx - 23.5) + u01(-1.2, 1.2) * (yy - 23.5)
    # A wall corner or door frame behind most faces: a soft vertical step at a random x.
    step = u01(-45, 45) * _col(rng.random(n) < 0.7)
    img += step * np.clip((xx - u01(0, 48)) / 2 + 0.5, 0, 1)

    hair = np.clip(skin - u01(35, 95), 5, 255)
    light = u01(-18, 18)  # side light across the face

    # ---- hair behind the head, then the face, then the fringe on the forehead
    r_head = np.sqrt((u / (a * 1.12)) ** 2 + ((v + 0.08 * b) / (b * 1.1)) ** 2)
    hair_low = b * u01(-0.1, 0.9)  # short to shoulder-length hair at the sides
    img = _blend(img, hair, _soft((r_head - 1) * a) * _soft(v - hair_low, 2.0))
    shoulders = np.sqrt((u / (2.1 * a)) ** 2 + ((v - 1.5 * b) / (0.62 * b)) ** 2)
    img = _blend(img, bg + u01(-60, 60), _soft((shoulders - 1) * b, 1.5))  # clothing
    neck = _soft(au - 0.55 * a) * _soft(0.6 * b - v)
    img = _blend(img, skin * 0.78, neck)
    r_face = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    shade = skin * (1 - 0.28 * r_face**2) + light * (u / a)  # rounded, side-lit face
    face = _soft((r_face - 1) * a, 1.2)
    img = _blend(img, shade, face)
    hairline = b * u01(-0.75, -0.5) + 2.5 * u01(-1, 1) * (u / a)  # slanted parting
    img = _blend(img, hair, face * _soft(v - hairline, 1.5))

    # ---- brows: thick segments from the inner end to the outer end
    bi = np.stack(np.broadcast_arrays(0.1 * a, p["brow_in"] * b))
    bo = np.stack(np.broadcast_arrays(0.6 * a, p["brow_out"] * b))
    d_brow = _segment_distance(au, v, bi, bo)
    brow_dark = np.minimum(hair, skin - 60)
    img = _blend(img, brow_dark, _soft(d_brow - u01(0.9, 1.4)))

    # ---- eyes: socket shadow, white, dark iris; openness is the expression cue
    ex, ey = 0.37 * a, -0.1 * b
    ew = 0.17 * a
    eh = ew * np.clip(p["eye_open"], 0.2, 1.5) * 0.75
    socket = np.sqrt(((au - ex) / (ew * 1.5)) ** 2 + ((v - ey) / (ew * 1.0)) ** 2)
    img = _blend(img, skin * 0.72, 0.7 * _soft((socket - 1) * ew, 2.0))
    eye = np.sqrt(((au - ex) / ew) ** 2 + ((v - ey) / eh) ** 2)
    eye_mask = _soft((eye - 1) * eh, 0.8)
    img = _blend(img, np.minimum(skin + 35, 235), eye_mask)
    gaze = 0.25 * ew * u01(-1, 1)
    iris = np.sqrt((au - ex - gaze * np.sign(u)) ** 2 + (v - ey) ** 2)
    img = _blend(img, u01(10, 45), eye_mask * _soft(iris - 0.6 * ew, 0.8))

    # ---- nose: shadow on the lit side's opposite, nostrils
    nose_side = u - 0.09 * a * np.sign(light)
    nose = _soft(np.abs(nose_side) - 0.8) * _soft(np.abs(v - 0.12 * b) - 0.13 * b)
    img = _blend(img, skin * 0.8, 0.45 * nose)
    nostril = np.sqrt(((au - 0.11 * a) / 1.3) ** 2 + ((v - 0.27 * b) / 0.9) ** 2)
    img = _blend(img, skin * 0.5, 0.8 * _soft(nostril - 1))
    wrinkle = (p["tilt"] > 0) * _soft(np.abs(v - 0.02 * b) - 0.5) * _soft(au - 0.12 * a)
    img = _blend(img, skin * 0.7, 0.6 * wrinkle)  # disgust: wrinkled nose bridge

    # ---- mouth: a centre line curved by the expression, opened above/below it
    my = 0.52 * b
    mw = p["mouth_w"] * a
    t = u / mw
    inside_w = _soft((np.abs(t) - 1) * mw)
    t = np.clip(t, -1, 1)
    centre = my + p["curve"] * (0.5 - t**2) - p["tilt"] * np.clip(sneer_side * t, 0, 1) ** 2
    span = np.sqrt(1 - t**2)
    top = centre - p["open_up"] * span
    bottom = centre + p["open_dn"] * span
    lip = u01(0.8, 1.3)
    lips = inside_w * _soft(top - lip - v) * _soft(v - bottom - lip)
    img = _blend(img, skin * u01(0.45, 0.65), lips)
    opening = inside_w * _soft(top - v) * _soft(v - bottom)
    img = _blend(img, u01(10, 35), opening)
    teeth = opening * (p["teeth"] > 0) * _soft(v - top - 0.45 * (bottom - top))
    img = _blend(img, np.minimum(skin + 40, 240), teeth)

    # ---- per-image texture and sensor noise: every base face a distinct image.
    # Strong (std ~45) outside the inner face, where real photos differ most (rooms,
    # hair, clothes), milder (std ~18) over the features so expressions stay readable.
    inner = _soft((r_face - 0.8) * a, 3.0)
    strength = u01(28, 32) * (1.5 - 0.9 * inner)
    img += strength * _texture(rng, n)
    img += u01(3, 5) * rng.standard_normal((n, _S, _S), dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _segment_distance(
    x: np.ndarray, y: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Distance from each (x, y) to the segment start->end (arrays of shape (2, n, 1, 1))."""
    sx, sy = start
    ex, ey = end
    vx, vy = ex - sx, ey - sy
    h = np.clip(((x - sx) * vx + (y - sy) * vy) / (vx * vx + vy * vy), 0, 1)
    return np.hypot(x - sx - h * vx, y - sy - h * vy)


# ---------------------------------------------------------------------- near edits
def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _signed(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi) * rng.choice([-1.0, 1.0]))


def _edit_jpeg(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(rng.integers(30, 71)))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"), dtype=np.uint8)


def _edit_brightness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(img.astype(np.float32) + _signed(rng, 15, 30))


def _edit_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Factors near 1 would be a no-op; draw from 0.75..0.9 or 1.1..1.3.
    factor = float(rng.choice([rng.uniform(0.75, 0.9), rng.uniform(1.1, 1.3)]))
    x = img.astype(np.float32)
    return _to_u8((x - x.mean()) * factor + x.mean())


def _edit_gamma(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gamma = float(rng.choice([rng.uniform(0.7, 0.87), rng.uniform(1.15, 1.4)]))
    return _to_u8(255.0 * (img.astype(np.float64) / 255.0) ** gamma)


def _edit_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(4, 8)
    return _to_u8(img.astype(np.float32) + rng.normal(0, sigma, img.shape))


def _edit_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0.6, 1.0)
    return _to_u8(ndimage.gaussian_filter(img.astype(np.float32), sigma, mode="nearest"))


def _edit_shift(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    while True:
        dy, dx = (int(v) for v in rng.integers(-3, 4, size=2))
        if dx or dy:
            break
    padded = np.pad(img, 3, mode="edge")  # replicate edges into the uncovered strip
    return padded[3 - dy : 3 - dy + _S, 3 - dx : 3 - dx + _S].copy()


def _edit_crop(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # The same margin on every side: a zoom about the centre, as a re-crop would do.
    top = bottom = left = right = int(rng.integers(2, 5))
    crop = Image.fromarray(img[top : _S - bottom, left : _S - right])
    return np.asarray(crop.resize((_S, _S), Image.Resampling.BILINEAR), dtype=np.uint8)


def _edit_rotate(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = _signed(rng, 3, 6)
    out = ndimage.rotate(img.astype(np.float32), angle, reshape=False, order=1, mode="nearest")
    return _to_u8(out)


def _edit_flip(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return img[:, ::-1].copy()


_EDITS = {
    "jpeg": _edit_jpeg,
    "brightness": _edit_brightness,
    "contrast": _edit_contrast,
    "gamma": _edit_gamma,
    "noise": _edit_noise,
    "blur": _edit_blur,
    "shift": _edit_shift,
    "crop": _edit_crop,
    "rotate": _edit_rotate,
    "flip": _edit_flip,
}


# ---------------------------------------------------------------------- non-faces
def _canvas(rng: np.random.Generator, light: bool) -> tuple[Image.Image, int, int]:
    """A blank PIL canvas and a contrasting ink level."""
    if light:
        paper, ink = int(rng.integers(200, 256)), int(rng.integers(0, 70))
    else:
        paper, ink = int(rng.integers(0, 60)), int(rng.integers(190, 256))
    return Image.new("L", (_S, _S), paper), paper, ink


def _text(rng: np.random.Generator) -> np.ndarray:
    # The bitmap default font renders identically everywhere (no FreeType involved).
    font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    img, _, ink = _canvas(rng, light=bool(rng.integers(2)))
    draw = ImageDraw.Draw(img)
    alphabet = string.ascii_letters + string.digits + "  .,:-"
    y = int(rng.integers(-2, 5))
    while y < _S - 4:
        line = "".join(rng.choice(list(alphabet), size=int(rng.integers(5, 10))))
        draw.text((int(rng.integers(-3, 4)), y), line, fill=ink, font=font)
        y += int(rng.integers(9, 13))
    if rng.integers(2):  # an underline or margin stroke, as on scanned pages
        x = int(rng.integers(0, _S))
        draw.line([(x, 0), (x + int(rng.integers(-5, 6)), _S)], fill=ink, width=1)
    return np.asarray(img, dtype=np.uint8)


def _blank(rng: np.random.Generator, level: int) -> np.ndarray:
    img = np.full((_S, _S), level, dtype=np.int16)
    if rng.integers(2):  # tiny sensor noise on some frames
        img += rng.integers(-1, 2, size=img.shape).astype(np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _chart(rng: np.random.Generator) -> np.ndarray:
    img, paper, ink = _canvas(rng, light=True)
    draw = ImageDraw.Draw(img)
    x0, y0 = int(rng.integers(4, 9)), int(rng.integers(39, 45))
    if rng.integers(2):  # bar chart over horizontal grid lines
        for g in range(y0 - 8, 2, -8):
            draw.line([(x0, g), (_S - 2, g)], fill=(paper + ink) // 2 + 40)
        n_bars = int(rng.integers(4, 10))
        width = (_S - x0 - 3) // n_bars
        for i in range(n_bars):
            h = int(rng.integers(4, y0 - 3))
            left = x0 + 2 + i * width
            fill = int(rng.integers(40, 170))
            draw.rectangle([left, y0 - h, left + max(width - 2, 1), y0], fill=fill, outline=ink)
    else:  # grid and one to three series with markers
        grid = (paper + ink) // 2 + 40
        step = int(rng.integers(6, 11))
        for g in range(y0 - step, 2, -step):
            draw.line([(x0, g), (_S - 2, g)], fill=grid)
        for g in range(x0 + step, _S - 2, step):
            draw.line([(g, 2), (g, y0)], fill=grid)
        n_pts = int(rng.integers(6, 11))
        xs = np.linspace(x0 + 2, _S - 3, n_pts)
        for _ in range(int(rng.integers(1, 4))):
            start = rng.uniform(8, y0 - 8)
            ys = np.clip(start + np.cumsum(rng.normal(0, 5, n_pts)), 3, y0 - 2)
            pts = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)]
            colour = int(rng.integers(0, 120))
            draw.line(pts, fill=colour, width=int(rng.integers(1, 3)))
            for x, y in pts:
                draw.rectangle([x - 1, y - 1, x + 1, y + 1], fill=colour)
    draw.line([(x0, 2), (x0, y0)], fill=ink, width=1)  # axes
    draw.line([(x0, y0), (_S - 2, y0)], fill=ink, width=1)
    for tick in range(x0 + 6, _S - 2, 8):
        draw.line([(tick, y0), (tick, y0 + 2)], fill=ink)
    return np.asarray(img, dtype=np.uint8)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:_S, 0:_S].astype(np.float64)
    lo, hi = sorted(rng.choice(256, size=2, replace=False).tolist())
    if hi - lo < 60:
        hi = min(255, lo + 60 + int(rng.integers(0, 60)))
    if rng.integers(2):  # linear ramp in a random direction
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * (xx - 23.5) + np.sin(angle) * (yy - 23.5)
    else:  # radial ramp around a random centre
        ramp = np.hypot(xx - rng.uniform(5, 43), yy - rng.uniform(5, 43))
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    if rng.integers(2):
        ramp = 1 - ramp
    return _to_u8(lo + (hi - lo) * ramp)


def _noise(rng: np.random.Generator) -> np.ndarray:
    if rng.integers(2):
        return rng.integers(0, 256, size=(_S, _S), dtype=np.uint8)
    img = np.full((_S, _S), int(rng.integers(60, 200)), dtype=np.uint8)  # salt and pepper
    hit = rng.random((_S, _S)) < rng.uniform(0.15, 0.4)
    img[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255).astype(np.uint8)
    return img


def _drawing(rng: np.random.Generator) -> np.ndarray:
    img, _, ink = _canvas(rng, light=bool(rng.random() < 0.8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(5, 10))):  # busy enough to be unlike any face
        shape = int(rng.integers(5))
        x1, y1 = (int(v) for v in rng.integers(0, 36, size=2))
        w, h = (int(v) for v in rng.integers(8, 22, size=2))
        box = [x1, y1, min(x1 + w, _S - 1), min(y1 + h, _S - 1)]
        fill = int(rng.integers(60, 230)) if rng.random() < 0.6 else None
        width = int(rng.integers(1, 4))
        if shape == 0:
            draw.rectangle(box, outline=ink, fill=fill, width=width)
        elif shape == 1:
            draw.ellipse(box, outline=ink, fill=fill, width=width)
        elif shape == 2:  # triangle / roof
            draw.polygon(
                [(x1, box[3]), (box[2], box[3]), ((x1 + box[2]) // 2, y1)], outline=ink, fill=fill
            )
        elif shape == 3:  # star
            cx, cy, r = x1 + w / 2, y1 + h / 2, min(w, h) / 2
            ang = np.arange(10) * np.pi / 5 + rng.uniform(0, np.pi)
            rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
            draw.polygon(
                [
                    (float(cx + q * np.cos(t)), float(cy + q * np.sin(t)))
                    for q, t in zip(rad, ang, strict=True)
                ],
                outline=ink,
                fill=fill,
            )
        else:  # zig-zag line
            xs = np.linspace(x1, box[2], int(rng.integers(3, 7)))
            ys = y1 + rng.integers(0, h + 1, size=xs.size)
            draw.line(
                [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)], fill=ink, width=width
            )
    return np.asarray(img, dtype=np.uint8)


_NON_FACES = {
    "text": _text,
    "chart": _chart,
    "gradient": _gradient,
    "noise": _noise,
    "drawing": _drawing,
}
