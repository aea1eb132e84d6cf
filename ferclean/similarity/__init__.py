"""Image similarity: exact content groups, perceptual hashes, Hamming search, near duplicates.

The layer under the auditors. Everything here works on pixel arrays and positions, not on
findings: :mod:`~ferclean.similarity.exact` (content hashes, groups of identical images),
:mod:`~ferclean.similarity.hashing` (imagehash-compatible perceptual hashes, vectorised),
:mod:`~ferclean.similarity.search` (exact multi-index Hamming search), and the
near-duplicate search in four modules: :mod:`~ferclean.similarity.transforms` (the
geometric variants hashed), :mod:`~ferclean.similarity.near_hash` (their search hashes),
:mod:`~ferclean.similarity.verify` (pixel verification) and
:mod:`~ferclean.similarity.near` (the index that runs them).
"""

from ferclean.similarity.exact import (
    DuplicateGroups,
    content_hash,
    exact_groups,
    group_ids_from_labels,
)
from ferclean.similarity.hashing import METHODS, hash_bits, hash_images, pack_bits, unpack_bits
from ferclean.similarity.near import (
    DEFAULT_TRANSFORMS,
    NEAR_METHODS,
    SHIFTS,
    NearDuplicateIndex,
    Transform,
    near_hashes,
)
from ferclean.similarity.search import (
    BACKENDS,
    HammingIndex,
    Matches,
    group_pairs,
    hamming_distance,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_TRANSFORMS",
    "METHODS",
    "NEAR_METHODS",
    "SHIFTS",
    "DuplicateGroups",
    "HammingIndex",
    "Matches",
    "NearDuplicateIndex",
    "Transform",
    "content_hash",
    "exact_groups",
    "group_ids_from_labels",
    "group_pairs",
    "hamming_distance",
    "hash_bits",
    "hash_images",
    "near_hashes",
    "pack_bits",
    "unpack_bits",
]
