"""Exact content: a 64-bit hash of every image's pixels, and groups of identical images.

The content hash is a vectorised multiply-xorshift over the image's 288 64-bit words
(hashlib has no batch API, and one call per image is 30x slower on FER-2013); every group
is then verified byte for byte, so the grouping is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferclean.dataset import IMAGE_SIZE

# Fixed odd multipliers for the content hash: deterministic across runs and machines.
_WORDS = IMAGE_SIZE * IMAGE_SIZE // 8
_MULTIPLIERS = (
    np.random.default_rng(20131216).integers(0, 2**63, size=_WORDS, dtype=np.uint64) * 2 + 1
).astype(np.uint64)


def content_hash(pixels: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each image's exact pixels, vectorised over the whole array.

    Equal images always get equal hashes; different images collide with negligible
    probability, and :func:`exact_groups` verifies on the pixels anyway.

    Examples
    --------
    >>> import numpy as np
    >>> px = np.zeros((3, 48, 48), np.uint8); px[2, 0, 0] = 1
    >>> h = content_hash(px)
    >>> bool(h[0] == h[1]), bool(h[0] == h[2])
    (True, False)
    """
    words = np.ascontiguousarray(pixels).reshape(len(pixels), IMAGE_SIZE * IMAGE_SIZE)
    words = words.view(np.uint64)
    with np.errstate(over="ignore"):
        mixed = words * _MULTIPLIERS
        mixed ^= mixed >> np.uint64(29)
        return mixed.sum(axis=1, dtype=np.uint64)


@dataclass(frozen=True)
class DuplicateGroups:
    """Groups of duplicate images as a group id per image (``-1`` = in no group).

    Group ids run 0..n_groups-1 in order of each group's first image, so they are
    deterministic. ``kind`` is ``"exact"`` or ``"near"``.

    Examples
    --------
    >>> import numpy as np
    >>> g = DuplicateGroups(np.array([0, -1, 0, 1, 1]), "exact")
    >>> g.n_groups, [m.tolist() for m in g.members()]
    (2, [[0, 2], [3, 4]])
    """

    group_of: np.ndarray
    kind: str

    @property
    def n_groups(self) -> int:
        return int(self.group_of.max(initial=-1)) + 1

    def members(self) -> list[np.ndarray]:
        """Image positions of each group, in group order, each sorted."""
        idx = np.flatnonzero(self.group_of >= 0)
        order = idx[np.argsort(self.group_of[idx], kind="stable")]
        sizes = np.bincount(self.group_of[idx], minlength=self.n_groups)
        return np.split(order, np.cumsum(sizes)[:-1]) if len(order) else []

    def sizes(self) -> np.ndarray:
        """Number of images in each group."""
        gid = self.group_of[self.group_of >= 0]
        return np.bincount(gid, minlength=self.n_groups)

    def first(self) -> np.ndarray:
        """Boolean mask: the first image (lowest position) of every group."""
        mask = np.zeros(len(self.group_of), bool)
        gid = self.group_of
        idx = np.flatnonzero(gid >= 0)
        _, first = np.unique(gid[idx], return_index=True)
        mask[idx[first]] = True
        return mask

    def first_positions(self) -> np.ndarray:
        """Position of each group's first image, in group order.

        Examples
        --------
        >>> DuplicateGroups(np.array([1, 0, 1, 0]), "exact").first_positions().tolist()
        [1, 0]
        """
        first = np.full(self.n_groups, -1, np.int64)
        mask = self.first()
        first[self.group_of[mask]] = np.flatnonzero(mask)
        return first

    def related(self) -> np.ndarray:
        """Each grouped image's related copy: its group's first image, and for the first
        image itself the next member; ``-1`` outside groups.

        Examples
        --------
        >>> DuplicateGroups(np.array([0, -1, 0, 0]), "exact").related().tolist()
        [2, -1, 0, 0]
        """
        gid = self.group_of
        grouped = gid >= 0
        if not grouped.any():
            return np.full(len(gid), -1, np.int64)
        first = self.first_positions()
        related = np.where(grouped, first[np.maximum(gid, 0)], -1)
        # the second member of each group: the first image of the group once its own
        # first image is left out (positions ascend, so the lowest remaining one)
        later = np.flatnonzero(grouped & ~self.first())
        second = np.full(self.n_groups, -1, np.int64)
        groups, at = np.unique(gid[later], return_index=True)
        second[groups] = later[at]
        is_first = grouped & (related == np.arange(len(gid)))
        related[is_first] = second[gid[is_first]]
        return related

    def select(self, keep: np.ndarray) -> DuplicateGroups:
        """Keep only the groups where ``keep[group]`` is true, renumbered in order."""
        keep = np.asarray(keep, bool)
        new_id = np.full(len(keep) + 1, -1, np.int64)
        new_id[:-1][keep] = np.arange(int(keep.sum()))
        return DuplicateGroups(new_id[self.group_of], self.kind)  # -1 maps to new_id[-1]


def group_ids_from_labels(labels: np.ndarray) -> np.ndarray:
    """Turn arbitrary cluster labels into group ids ordered by first appearance.

    Clusters of one image get ``-1``.

    Examples
    --------
    >>> group_ids_from_labels(np.array([7, 3, 7, 5, 3])).tolist()
    [0, 1, 0, -1, 1]
    """
    uniq, first, inverse, counts = np.unique(
        labels, return_index=True, return_inverse=True, return_counts=True
    )
    inverse = inverse.reshape(-1)
    multi = counts > 1
    order = np.argsort(first[multi], kind="stable")  # groups by first image
    rank = np.full(len(uniq), -1, np.int64)
    rank[np.flatnonzero(multi)[order]] = np.arange(int(multi.sum()))
    return rank[inverse]


def merge_groups(*groupings: DuplicateGroups, kind: str = "copies") -> DuplicateGroups:
    """Join groupings of the same images: two images share a group if any grouping ties
    them, directly or through others (connected components).

    Examples
    --------
    >>> a = DuplicateGroups(np.array([0, 0, -1, -1, -1]), "exact")
    >>> b = DuplicateGroups(np.array([-1, 0, 0, -1, -1]), "near")
    >>> merge_groups(a, b).group_of.tolist()
    [0, 0, 0, -1, -1]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not groupings:
        raise ValueError("merge_groups needs at least one grouping")
    n = len(groupings[0].group_of)
    heads, tails = [], []
    for groups in groupings:
        if len(groups.group_of) != n:
            raise ValueError("groupings to merge must cover the same images")
        members = np.flatnonzero(groups.group_of >= 0)
        first = groups.first_positions()  # each group's first image
        heads.append(members)
        tails.append(first[groups.group_of[members]])
    head, tail = np.concatenate(heads), np.concatenate(tails)
    graph = coo_matrix((np.ones(len(head), np.int8), (head, tail)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return DuplicateGroups(group_ids_from_labels(component), kind)


def exact_groups(pixels: np.ndarray, hashes: np.ndarray | None = None) -> DuplicateGroups:
    """Group pixel-identical images.

    Hashes find the candidates; the candidates' pixels are then compared byte for byte,
    so the result is exact even if two different images ever shared a hash.

    Examples
    --------
    >>> import numpy as np
    >>> px = np.zeros((4, 48, 48), np.uint8); px[1] = 9; px[2] = 5; px[3] = 9
    >>> exact_groups(px).group_of.tolist()
    [-1, 0, -1, 0]
    """
    n = len(pixels)
    if hashes is None:
        hashes = content_hash(pixels)
    group_of = np.full(n, -1, np.int64)
    if n < 2:
        return DuplicateGroups(group_of, "exact")
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse.reshape(-1)] > 1)
    if len(candidates):
        rows = np.ascontiguousarray(pixels[candidates]).reshape(len(candidates), -1)
        keys = rows.view(np.dtype((np.void, rows.shape[1]))).reshape(-1)
        _, exact = np.unique(keys, return_inverse=True)
        group_of[candidates] = exact.reshape(-1) + n  # cluster labels, made unique
        labels = np.where(group_of >= 0, group_of, -np.arange(1, n + 1))
        group_of = group_ids_from_labels(labels)
    return DuplicateGroups(group_of, "exact")
