"""Leakage checks: which test images have a copy in the data a model trains on.

:func:`check_leakage` lists every test image with a pixel-identical copy (and, on request,
a near or mirrored copy) in the training data; :func:`assert_no_leakage` raises
:class:`~ferclean.errors.LeakageError` if there is any.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ferclean._validation import check_dataset
from ferclean.dataset import SPLITS, FaceDataset
from ferclean.errors import LeakageError
from ferclean.similarity.exact import content_hash

__all__ = ["assert_no_leakage", "check_leakage"]

_LEAKAGE_COLUMNS = (
    "test_position",
    "test_id",
    "test_split",
    "train_position",
    "train_id",
    "kind",
    "similarity",
)
# Pairs whose pixels are compared per chunk when verifying hash matches: bounds memory
# (chunk * 2304 bytes per side) whatever the number of matching pairs.
_VERIFY_CHUNK = 65536


def check_leakage(
    train: FaceDataset, test: FaceDataset, *, near: bool = False, mirror: bool = False
) -> pd.DataFrame:
    """List every test image that has a copy in the training data (exact, or also near).

    Images are matched by a 64-bit content hash and each match is then verified byte for
    byte, so the table is exact; the work is vectorised (no comparison of every test
    image with every training image).

    Parameters
    ----------
    train, test : FaceDataset
        The data a model trains on (resampled or not) and the data it is evaluated on.
    near : bool, default=False
        Also report near duplicates (re-encoded, re-lit, shifted, cropped, rotated copies),
        found with :class:`ferclean.similarity.near.NearDuplicateIndex` fitted on ``train``
        and verified on the pixels; their ``kind`` is ``"near"`` and ``similarity`` the
        verified correlation.
    mirror : bool, default=False
        With ``near``, also report horizontally flipped copies (``kind`` ``"mirror"``):
        a flipped copy of a test image in training is still a leak.

    Returns
    -------
    DataFrame
        One row per (test image, training image) pair of copies, sorted by
        ``test_position`` then ``train_position``, with columns ``test_position``,
        ``test_id``, ``test_split``, ``train_position``, ``train_id`` (positions index
        the two datasets), ``kind`` (``"exact"``) and ``similarity`` (1.0 for exact
        copies). Empty, with these columns, when nothing leaks. A training image that
        is an oversampled copy appears in a row of its own, next to its source.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> leaks = check_leakage(ds.split("Training"), ds.split(["PublicTest", "PrivateTest"]))
    >>> list(leaks.columns)
    ['test_position', 'test_id', 'test_split', 'train_position', 'train_id', 'kind', 'similarity']
    >>> len(leaks) > 0, set(leaks.kind)
    (True, {'exact'})
    """
    train = check_dataset(train, name="train")
    test = check_dataset(test, name="test")
    if mirror and not near:
        raise ValueError("mirror=True needs near=True")

    test_pos, train_pos = _exact_pairs(train, test)
    kind = np.full(len(test_pos), "exact", dtype=object)
    similarity = np.ones(len(test_pos), dtype=np.float64)
    if near and len(train) and len(test):
        from ferclean.similarity.near import NearDuplicateIndex

        found = NearDuplicateIndex(mirror=mirror).fit(train).query(test)
        found = found[found["kind"] != "exact"]  # identical copies are listed above
        test_pos = np.concatenate([test_pos, found["new"].to_numpy(np.int64)])
        train_pos = np.concatenate([train_pos, found["fitted"].to_numpy(np.int64)])
        kind = np.concatenate([kind, found["kind"].to_numpy(object)])
        similarity = np.concatenate([similarity, found["similarity"].to_numpy(np.float64)])
    order = np.lexsort((train_pos, test_pos))
    test_pos, train_pos = test_pos[order], train_pos[order]
    kind, similarity = kind[order], similarity[order]
    return pd.DataFrame(
        {
            "test_position": test_pos.astype(np.int64),
            "test_id": test.ids[test_pos].astype(object),
            "test_split": np.asarray(SPLITS, dtype=object)[test.splits[test_pos]],
            "train_position": train_pos.astype(np.int64),
            "train_id": train.ids[train_pos].astype(object),
            "kind": kind,
            "similarity": similarity,
        },
        columns=list(_LEAKAGE_COLUMNS),
    )


def _exact_pairs(train: FaceDataset, test: FaceDataset) -> tuple[np.ndarray, np.ndarray]:
    """(test position, train position) pairs of pixel-identical images: hash, then verify."""
    test_pos, train_pos = _hash_matches(content_hash(train.pixels), content_hash(test.pixels))
    same = np.ones(len(test_pos), dtype=bool)
    for start in range(0, len(test_pos), _VERIFY_CHUNK):
        part = slice(start, start + _VERIFY_CHUNK)
        same[part] = np.all(
            train.pixels[train_pos[part]] == test.pixels[test_pos[part]], axis=(1, 2)
        )
    return test_pos[same], train_pos[same]


def _hash_matches(train_hash: np.ndarray, test_hash: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (test position, train position) pairs with equal hashes, via one sort."""
    order = np.argsort(train_hash, kind="stable")
    ordered = train_hash[order]
    lo = np.searchsorted(ordered, test_hash, side="left")
    hi = np.searchsorted(ordered, test_hash, side="right")
    counts = hi - lo
    total = int(counts.sum())
    test_pos = np.repeat(np.arange(len(test_hash), dtype=np.int64), counts)
    # Offset of each pair inside its test image's run of equal train hashes.
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    train_pos = order[np.repeat(lo, counts) + within].astype(np.int64)
    return test_pos, train_pos


def assert_no_leakage(train: FaceDataset, test: FaceDataset, *, near: bool = False) -> None:
    """Raise :class:`LeakageError` if any test image has a copy in the training data.

    Parameters
    ----------
    train, test : FaceDataset
    near : bool, default=False
        As for :func:`check_leakage`.

    Raises
    ------
    LeakageError
        Naming how many test images leak, with up to five examples.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> ds = demo_dataset(n_faces=300)
    >>> assert_no_leakage(ds.split("Training")[:50], ds.split("PrivateTest")[:5])
    >>> assert_no_leakage(ds.split("Training"), ds.split(["PublicTest", "PrivateTest"]))
    Traceback (most recent call last):
    ...
    ferclean.errors.LeakageError: ... test image(s) have a copy in the training data ...
    """
    leaks = check_leakage(train, test, near=near)
    if len(leaks):
        n_images = leaks.test_position.nunique()
        shown = "; ".join(
            f"test {r.test_id} ({r.test_split}) = train {r.train_id}"
            for r in leaks.drop_duplicates("test_position").head(5).itertuples()
        )
        more = f" (and {n_images - 5} more)" if n_images > 5 else ""
        raise LeakageError(
            f"{n_images} of {len(test)} test image(s) have a copy in the training data "
            f"({len(leaks)} pair(s)): {shown}{more}. Remove them from training (see "
            f"ferclean's cross-split leak audit) before evaluating."
        )
