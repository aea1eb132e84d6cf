"""Work shared between auditors: computed on first use, then reused.

The runner builds one :class:`AuditContext` per dataset and hands it to every auditor, so
the pixel hashes and duplicate groups are computed once however many auditors use them.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ferclean.dataset import IMAGE_SIZE, FaceDataset
from ferclean.similarity.exact import DuplicateGroups, content_hash, exact_groups


class AuditContext:
    """Lazily computed, shared intermediate results for one dataset.

    Examples
    --------
    >>> import numpy as np
    >>> ctx = AuditContext(FaceDataset(np.zeros((2, 48, 48), np.uint8)))
    >>> ctx.exact_groups.n_groups
    1
    """

    def __init__(self, dataset: FaceDataset) -> None:
        self.dataset = dataset
        self.extra: dict[str, object] = {}  # room for auditors' own shared results

    @cached_property
    def content_hashes(self) -> np.ndarray:
        """64-bit exact-content hash of every image."""
        return content_hash(self.dataset.pixels)

    @cached_property
    def exact_groups(self) -> DuplicateGroups:
        """Groups of pixel-identical images."""
        return exact_groups(self.dataset.pixels, self.content_hashes)

    @cached_property
    def mean_pixel(self) -> np.ndarray:
        """Mean grey level of every image (float64)."""
        n = len(self.dataset)
        flat = self.dataset.pixels.reshape(n, IMAGE_SIZE * IMAGE_SIZE)
        return flat.mean(axis=1, dtype=np.float64)
