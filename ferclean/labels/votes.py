"""The copies' own vote: a model-free signal about labels.

Copies of one photograph (exact or near duplicates) should carry one emotion. When they
carry several, each copy is a vote: the group's label distribution says which label the
annotators most often gave that photo, and the members in the minority are suspects with
the majority as the suggested label. A tie suggests nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CopiesVote", "copies_vote"]


@dataclass(frozen=True)
class CopiesVote:
    """The label vote inside every duplicate group.

    Attributes
    ----------
    group_of : ndarray (n,)
        Group id per image, ``-1`` outside groups.
    counts : ndarray (G, K)
        Labelled members per group and class (unlabelled members do not vote).
    majority : ndarray (G,)
        The unique most frequent label of each group; ``-1`` on a tie or with no labels.
    minority : ndarray (n,) of bool
        Labelled images whose label is not their group's majority (only where a
        majority exists).
    suggested : ndarray (n,)
        The group's majority for minority images, ``-1`` elsewhere.
    support : ndarray (n,)
        The share of the group's labelled members that carry the image's own label
        (1 outside groups and for unlabelled images).

    Examples
    --------
    >>> vote = copies_vote([3, 3, 4, 1, 2], np.array([0, 0, 0, 1, 1]), n_classes=7)
    >>> vote.majority.tolist(), vote.minority.tolist(), vote.suggested.tolist()
    ([3, -1], [False, False, True, False, False], [-1, -1, 3, -1, -1])
    """

    group_of: np.ndarray
    counts: np.ndarray
    majority: np.ndarray
    minority: np.ndarray
    suggested: np.ndarray
    support: np.ndarray

    @property
    def conflicting(self) -> np.ndarray:
        """Groups whose labelled members carry more than one label."""
        return (self.counts > 0).sum(axis=1) > 1

    def distribution(self, group: int) -> dict[int, int]:
        """One group's labels and how many members carry each.

        Examples
        --------
        >>> copies_vote([3, 3, 4], np.array([0, 0, 0]), n_classes=7).distribution(0)
        {3: 2, 4: 1}
        """
        row = self.counts[group]
        return {int(k): int(row[k]) for k in np.flatnonzero(row)}

    def summary(self) -> dict[str, int]:
        """Counts for ``summary.json``: groups examined, with several labels, with a
        majority among those, ties, and minority images flagged."""
        conflicting = self.conflicting
        return {
            "groups": int(len(self.counts)),
            "conflicting_groups": int(conflicting.sum()),
            "majority_groups": int((conflicting & (self.majority >= 0)).sum()),
            "tied_groups": int((conflicting & (self.majority < 0)).sum()),
            "minority_images": int(self.minority.sum()),
        }


def copies_vote(labels: Any, group_of: np.ndarray, *, n_classes: int) -> CopiesVote:
    """Tally each duplicate group's labels and flag the members in the minority.

    Parameters
    ----------
    labels : array of int (n,)
        ``-1`` for unlabelled images, which do not vote and are never flagged.
    group_of : array of int (n,)
        Group id per image (``-1`` outside groups), e.g. from
        :func:`ferclean.similarity.exact.merge_groups` over exact and near groups.
    n_classes : int

    Examples
    --------
    >>> vote = copies_vote([0, 1, 1, -1], np.array([0, 0, 0, 0]), n_classes=2)
    >>> vote.counts.tolist(), vote.support.round(2).tolist()
    ([[1, 2]], [0.33, 0.67, 0.67, 1.0])
    """
    labels = np.asarray(labels, dtype=np.int64)
    group_of = np.asarray(group_of, dtype=np.int64)
    if labels.shape != group_of.shape:
        raise ValueError(f"{len(labels)} labels for {len(group_of)} group ids")
    n_groups = int(group_of.max(initial=-1)) + 1
    voting = (group_of >= 0) & (labels >= 0)
    counts = np.zeros((n_groups, n_classes), np.int64)
    np.add.at(counts, (group_of[voting], labels[voting]), 1)
    top = counts.max(axis=1, initial=0)
    unique_top = (counts == top[:, None]).sum(axis=1) == 1
    majority = np.where(unique_top & (top > 0), counts.argmax(axis=1), -1)
    n = len(labels)
    group_majority = np.full(n, -1, np.int64)
    group_majority[group_of >= 0] = majority[group_of[group_of >= 0]]
    minority = voting & (group_majority >= 0) & (labels != group_majority)
    suggested = np.where(minority, group_majority, -1)
    support = np.ones(n)
    totals = counts.sum(axis=1)
    own = counts[group_of[voting], labels[voting]]
    support[voting] = own / totals[group_of[voting]]
    return CopiesVote(group_of=group_of, counts=counts, majority=majority, minority=minority,
                      suggested=suggested, support=support)
