"""The near-duplicate search on Dask: the in-memory pairs, partition by partition.

:func:`dask_near_pairs` finds the same pairs as
:meth:`ferclean.similarity.near.NearDuplicateIndex.pairs` over a Dask DataFrame of images
(the Parquet form's columns), without gathering the pixels anywhere. It runs the
in-memory engine's three steps with the in-memory engine's code, only arranged as Dask
stages:

1. **Hash** every partition's images under every transform variant
   (:func:`~ferclean.similarity.near_hash.near_hashes`), and emit, for every substring
   of a :class:`BucketLayout`, one row per variant code (its exact substring value) and
   one row per plain code and route within the substring's radius ``t``.
2. **Search exactly**: a shuffle brings every variant code and every plain code that
   agree on a substring to within ``t`` bits to one partition (routed on the substring
   and part of its value; inside the partition each plain row is spread over the exact
   ``(substring, value)`` buckets within ``t`` bits of it), where the pairs of each
   bucket are compared on their full codes. By the pigeonhole principle (the substrings
   are disjoint and ``sum(t + 1) >= radius + 1``), two codes within ``radius`` agree to
   within ``t`` bits on at least one substring, so no pair is missed; a pair is kept only
   in the bucket of the *first* substring on which it qualifies, which both full codes
   decide locally, so none is reported twice.
3. **Verify** on the pixels: the hits (the two closest of each pair in each bucket
   partition) are joined with both images' pixels by ``row`` (two hash joins; the second,
   on the second image, leaves all of a pair's hits in one partition), and each
   partition's pairs are verified and reduced to one row per pair by the in-memory
   engine's own function (``ferclean.similarity.near._pairs_table``).

Pairs are ordered by ``row``: the table equals the in-memory table of the images in
``row`` order (the order of a dataset ferclean reads or writes), whatever the partitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import ceil
from typing import Any

import numpy as np
import pandas as pd

from ferclean.dataset import IMAGE_SIZE
from ferclean.similarity.hashing import popcount
from ferclean.similarity.near import _best_hits, _check_params, _empty_pairs, _pairs_table
from ferclean.similarity.near_hash import near_hashes
from ferclean.similarity.search import (
    _budget_splits,
    _check_int,
    _flip_masks,
    _layouts,
    _n_probes,
    _thresholds,
)
from ferclean.similarity.transforms import DEFAULT_TRANSFORMS, Transform, _with_mirror

__all__ = ["BucketLayout", "NearSearchStats", "dask_near_pairs", "dataset_frame"]

_N_BITS = 64
_PIXEL_BYTES = IMAGE_SIZE * IMAGE_SIZE  # 2304
# A bucket id is the substring number in the top 8 bits above the substring's value.
_KEY_BITS = 56
# Substrings probed with more flip masks than this per plain code are not considered by
# the automatic layout (a 64-bit substring at radius 8 would emit 5e9 rows per image).
_MAX_PLAIN_ROWS = 4096
# Costs of one row through the shuffle and of one row in a bucket (spread, sorted,
# matched), in units of one comparison of two codes inside a bucket (gather, XOR,
# popcount): on FER-2013 with a 2-worker LocalCluster (task times on the busy 2-core
# development machine) ~2.5 us, ~1.1 us and ~80 ns. The automatic layout is the same
# for FER-2013's 36k images from half to twice these ratios.
_ROW_COST = 30.0
_BUCKET_ROW_COST = 14.0
# Rows per bucket partition by default (~25 bytes each: ~100 MB).
_BUCKET_ROWS = 1 << 22
# Comparisons held at once inside one bucket partition.
_COMPARE_BUDGET = 1 << 22
# Plain codes sampled to measure how often substrings collide (all their pairs).
_SAMPLE = 600
_PAIR_NAMES = ("row_i", "row_j")


def _dask() -> tuple[Any, Any]:
    """``(dask, dask.dataframe)``, or a clear error naming the extra to install."""
    from ferclean.engines._cluster import require_dask

    return require_dask("the Dask near-duplicate search")


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class BucketLayout:
    """Where the bucket shuffle cuts the 64-bit codes: disjoint substrings and radii.

    Each substring ``(start, length, t)`` covers bits ``[start, start + length)`` (bit 0
    is the most significant) and is searched to within ``t`` bits: every variant code
    goes to the bucket of its exact substring value, and every plain code to the buckets
    of every value within ``t`` bits of its own (``C(length, <= t)`` rows). A substring
    with ``t = -1`` is not used. The layout finds every pair within ``radius`` when
    ``sum(t + 1) >= radius + 1`` (pigeonhole); the substrings need not cover all bits.

    Per image, with ``V`` variants (17, or 34 with ``mirror=True``), the layout puts
    ``V * m + sum(C(length, <= t))`` rows in buckets (:meth:`rows_per_image`), ``m`` the
    substrings used: a constant, whatever the number of images ``N``. Of those, the
    shuffle carries ``V * m + sum(C(r, <= t))`` when it routes on ``r`` bits of each
    substring (:meth:`shuffle_rows_per_image`; the plain rows are spread over their
    buckets after it). A bucket holds about ``N * (V + C(length, <= t)) / 2**length``
    rows (more on clustered codes, such as the hashes of aligned faces), so at a fixed
    layout the bucket sizes grow like ``N`` and the comparisons inside buckets like
    ``N**2 * V * sum(P(d_i <= t_i))``; :meth:`auto` lengthens the substrings as ``N``
    grows (towards ``log2(N)`` bits, fewer substrings searched to larger radii), trading
    more rows per image for bounded buckets. On FER-2013 (36k images) it picks
    ``split([19, 15, 15, 15], 8)``: 307 bucket rows per image (121 through the shuffle
    with 7 route bits), 749 rows in the largest bucket, 1.1e8 comparisons for 74,172
    hits; at a million images ``split([22, 21, 21], 8)`` (769 bucket rows, 138
    shuffled).

    Parameters
    ----------
    substrings : tuple of (start, length, t)
        At most 128, each ``0 <= length <= 56`` (a bucket id holds the substring number
        above a 56-bit value).

    Examples
    --------
    >>> layout = BucketLayout.split([19, 15, 15, 15], radius=8)
    >>> layout.substrings
    ((0, 19, 2), (19, 15, 1), (34, 15, 1), (49, 15, 1))
    >>> layout.rows_per_image(17)
    307
    >>> BucketLayout.brute(8).rows_per_image(17)  # one bucket: every pair compared
    18
    """

    substrings: tuple[tuple[int, int, int], ...]

    @classmethod
    def split(cls, lengths: Sequence[int], radius: int) -> BucketLayout:
        """Contiguous substrings of ``lengths`` bits from bit 0, with the pigeonhole
        radii of :mod:`ferclean.similarity.search` (``sum(t + 1) = radius + 1``, the
        remainder to the longest).

        Examples
        --------
        >>> BucketLayout.split([8] * 8, 8).substrings[:2]
        ((0, 8, 1), (8, 8, 0))
        """
        lengths = [int(b) for b in lengths]
        starts = np.cumsum([0, *lengths[:-1]])
        t = _thresholds(lengths, int(radius))
        return cls(tuple((int(s), b, int(ti)) for s, b, ti in zip(starts, lengths, t,
                                                                  strict=True)))

    @classmethod
    def brute(cls, radius: int) -> BucketLayout:
        """One bucket holding every code (an empty substring): the brute-force search.

        Examples
        --------
        >>> BucketLayout.brute(8).substrings
        ((0, 0, 8),)
        """
        return cls(((0, 0, int(radius)),))

    @classmethod
    def auto(cls, sample: Any, n_images: int, n_variants: int, radius: int, *,
             route_bits: int = _KEY_BITS) -> BucketLayout:
        """The layout with the least expected work for ``n_images`` images.

        The work is ``N * (shuffle rows * _ROW_COST + bucket rows * _BUCKET_ROW_COST)
        + comparisons`` (per image: :meth:`shuffle_rows_per_image` with ``route_bits``
        and :meth:`rows_per_image`), with ``comparisons = N * V * N * sum_i P(d_i <=
        t_i)``, ``P`` measured on all pairs of the ``sample`` of plain codes (at least
        the uniform rate ``C(length, <= t) / 2**length``). Candidates are the equal and
        long-first layouts of :mod:`ferclean.similarity.search` for 1 to ``radius + 1``
        substrings (at most 56 bits each), and :meth:`brute`.

        Examples
        --------
        >>> import numpy as np
        >>> codes = np.random.default_rng(0).integers(0, 2**63, 200).astype(np.uint64)
        >>> BucketLayout.auto(codes, 20, 17, 8) == BucketLayout.brute(8)  # tiny: one bucket
        True
        >>> len(BucketLayout.auto(codes, 10**6, 17, 8).substrings) > 1
        True
        """
        radius = _check_int(radius, "radius", 0, _N_BITS)
        sample = np.asarray(sample, np.uint64).ravel()
        first, second = np.triu_indices(len(sample), k=1)
        xor = sample[first] ^ sample[second]
        n, v = max(int(n_images), 1), max(int(n_variants), 1)

        def rows_cost(layout: BucketLayout) -> float:
            return n * (layout.shuffle_rows_per_image(v, route_bits) * _ROW_COST
                        + layout.rows_per_image(v) * _BUCKET_ROW_COST)

        best = cls.brute(radius)
        best_cost = rows_cost(best) + float(n) * v * n
        rates: dict[tuple[int, int, int], float] = {}
        for m in range(1, radius + 2):
            for lengths in _layouts(_N_BITS, m, radius):
                layout = cls.split([min(b, _KEY_BITS) for b in lengths], radius)
                if layout.plain_rows() > _MAX_PLAIN_ROWS:
                    continue
                within = 0.0
                for part in layout.substrings:
                    start, length, t = part
                    if t < 0:
                        continue
                    if part not in rates:
                        d = popcount(_substring(xor, start, length))
                        rates[part] = max(float(np.mean(d <= t)) if len(d) else 0.0,
                                          _n_probes(length, t) / 2.0**length)
                    within += rates[part]
                cost = rows_cost(layout) + float(n) * v * n * within
                if cost < best_cost:
                    best, best_cost = layout, cost
        return best

    def check(self, radius: int) -> None:
        """Raise ``ValueError`` unless the layout finds every pair within ``radius``.

        Examples
        --------
        >>> BucketLayout.split([32, 32], 8).check(9)
        Traceback (most recent call last):
        ...
        ValueError: layout ((0, 32, 4), (32, 32, 3)): its substrings' sum(t + 1) is 9; \
radius 9 needs at least 10 (pigeonhole)
        """
        if not self.substrings:
            raise ValueError("layout has no substrings")
        if len(self.substrings) > 128:
            raise ValueError(f"layout has {len(self.substrings)} substrings; at most 128")
        used = np.zeros(_N_BITS, bool)
        for part in self.substrings:
            start, length, t = (int(x) for x in part)
            if not (0 <= length <= _KEY_BITS and 0 <= start and start + length <= _N_BITS
                    and t >= -1):
                raise ValueError(f"layout substring {part!r}: need 0 <= length <= "
                                 f"{_KEY_BITS}, the bits within 0..{_N_BITS}, t >= -1")
            if used[start:start + length].any():
                raise ValueError(f"layout substring {part!r} overlaps another; substrings "
                                 "must be disjoint")
            used[start:start + length] = True
        budget = sum(t + 1 for _, _, t in self.substrings)
        if budget < radius + 1:
            raise ValueError(f"layout {self.substrings}: its substrings' sum(t + 1) is "
                             f"{budget}; radius {radius} needs at least {radius + 1} "
                             "(pigeonhole)")

    def plain_rows(self) -> int:
        """Rows one plain code emits: ``sum(C(length, <= t))`` over the substrings used.

        Examples
        --------
        >>> BucketLayout.split([22, 21, 21], 8).plain_rows()  # 254 + 232 + 232
        718
        """
        return sum(_n_probes(length, min(t, length)) for _, length, t in self.substrings
                   if t >= 0)

    def shuffle_rows_per_image(self, n_variants: int, route_bits: int = _KEY_BITS) -> int:
        """Rows one image sends through the shuffle when it routes on ``route_bits`` bits
        of each substring: one per variant and substring, and ``C(min(route_bits,
        length), <= t)`` per plain code and substring.

        Examples
        --------
        >>> layout = BucketLayout.split([19, 15, 15, 15], 8)
        >>> layout.shuffle_rows_per_image(17), layout.shuffle_rows_per_image(17, 7)
        (307, 121)
        """
        used = [(length, t) for _, length, t in self.substrings if t >= 0]
        r = int(route_bits)
        return int(n_variants) * len(used) + sum(_n_probes(min(r, b), min(t, r, b))
                                                 for b, t in used)

    def rows_per_image(self, n_variants: int) -> int:
        """Rows one image emits: one per variant and substring, plus :meth:`plain_rows`.

        Examples
        --------
        >>> BucketLayout.split([13, 13, 13, 13, 12], 8).rows_per_image(17)
        142
        """
        used = sum(1 for _, _, t in self.substrings if t >= 0)
        return int(n_variants) * used + self.plain_rows()


def _substring(codes: np.ndarray, start: int, length: int) -> np.ndarray:
    """Bits ``[start, start + length)`` of 64-bit codes (bit 0 the MSB) as uint64."""
    codes = np.asarray(codes, np.uint64)
    if length == 0:
        return np.zeros(codes.shape, np.uint64)
    shifted = codes >> np.uint64(_N_BITS - start - length)
    return shifted & np.uint64((1 << length) - 1) if length < _N_BITS else shifted


# --------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class NearSearchStats:
    """What one :func:`dask_near_pairs` run did (``table.attrs["near_search"]``).

    Attributes
    ----------
    n_images : int
    layout : BucketLayout
    route_bits : int
        Bits of each substring the shuffle routed on (see :func:`dask_near_pairs`).
    bucket_partitions : int
        Partitions of the bucket shuffle.
    shuffle_rows : int
        Rows emitted to the bucket shuffle.
    bucket_rows : int
        Rows in the buckets once the plain rows are spread over them inside the
        partitions: ``n_images * layout.rows_per_image(n_variants)``.
    largest_bucket : int
        Rows in the largest ``(substring, value)`` bucket.
    comparisons : int
        (variant code, plain code) pairs compared inside buckets.
    hash_hits : int
        Of those, the hits within ``radius`` (each found once).
    candidate_pairs : int
        Distinct image pairs among the hits, verified on the pixels.
    verified_pairs : int
        Pairs at or above the similarity threshold: the rows of the table.

    Examples
    --------
    >>> stats = NearSearchStats(0, BucketLayout.brute(8), 56, 1, 0, 0, 0, 0, 0, 0, 0)
    >>> stats.verified_pairs
    0
    """

    n_images: int
    layout: BucketLayout
    route_bits: int
    bucket_partitions: int
    shuffle_rows: int
    bucket_rows: int
    largest_bucket: int
    comparisons: int
    hash_hits: int
    candidate_pairs: int
    verified_pairs: int


# --------------------------------------------------------------------------- partitions
def _pixels_of(column: Any) -> np.ndarray:
    """(n, 48, 48) uint8 images from a ``pixels`` column or object array: bytes (what a
    Parquet ``fixed_size_binary(2304)`` column reads as), or uint8 lists of 2304 values."""
    values = column.to_numpy(object) if isinstance(column, pd.Series) else np.asarray(
        column, dtype=object)
    n = len(values)
    if n and not isinstance(values[0], (bytes, bytearray)):
        flat = np.asarray([np.asarray(v, np.uint8) for v in values])
        if flat.shape != (n, _PIXEL_BYTES):
            raise ValueError(f"pixels must hold {_PIXEL_BYTES} values per image; got "
                             f"shape {flat.shape}")
        return flat.reshape(n, IMAGE_SIZE, IMAGE_SIZE)
    joined = b"".join(values)
    if len(joined) != n * _PIXEL_BYTES:
        sizes = np.array([len(v) for v in values])
        bad = int(np.flatnonzero(sizes != _PIXEL_BYTES)[0])
        raise ValueError(f"pixels of the image at partition position {bad} have "
                         f"{sizes[bad]} bytes; expected {_PIXEL_BYTES}")
    return np.frombuffer(joined, np.uint8).reshape(n, IMAGE_SIZE, IMAGE_SIZE)


def _binary_dtype() -> Any:
    """Arrow ``binary`` as a pandas dtype: what the pixels travel as between stages (a
    column of bytes objects would be read as strings by dask, and a fixed-size binary
    one does not survive the P2P shuffle's pandas round trip)."""
    import pyarrow as pa

    return pd.ArrowDtype(pa.binary())


def _as_image_columns(part: pd.DataFrame) -> pd.DataFrame:
    """``row`` as int64 (the merge keys' one dtype) and ``pixels`` as Arrow binary,
    checked to hold 2304 bytes per image."""
    import pyarrow as pa
    import pyarrow.compute as pc

    pixels = part["pixels"]
    arrow = pixels.dtype.pyarrow_dtype if isinstance(pixels.dtype, pd.ArrowDtype) else None
    if arrow is not None and (pa.types.is_binary(arrow) or pa.types.is_fixed_size_binary(
            arrow) or pa.types.is_large_binary(arrow)):
        values = pa.array(pixels).cast(pa.binary())
    else:  # bytes objects, or uint8 lists
        values = pa.array([v if isinstance(v, bytes) else np.asarray(v, np.uint8).tobytes()
                           for v in pixels.to_numpy(object)], pa.binary())
    rows = part["row"].to_numpy(np.int64)
    sizes = pc.binary_length(values).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(sizes != _PIXEL_BYTES)
    if len(bad):
        raise ValueError(f"pixels of row {rows[bad[0]]}: {sizes[bad[0]]} bytes, expected "
                         f"{_PIXEL_BYTES} (48x48 uint8); {len(bad)} such image(s) in its "
                         "partition")
    return pd.DataFrame({"row": rows, "pixels": pd.array(values, dtype=_binary_dtype())},
                        index=part.index)


def _default_route_bits(partitions: int) -> int:
    """Route bits for ``partitions`` shuffle partitions: 16 routes per partition and
    substring or more, so that uneven routes still even out."""
    return min(_KEY_BITS, max(4, ceil(np.log2(max(int(partitions), 1))) + 4))


def _route_bits(layout: BucketLayout, route_bits: int) -> list[int]:
    """Bits of each substring the shuffle routes on: its last ``route_bits`` (at most its
    length)."""
    return [min(int(route_bits), length) for _, length, _ in layout.substrings]


def _emit(rows: np.ndarray, codes: np.ndarray, layout: BucketLayout,
          route_bits: int = _KEY_BITS) -> dict[str, np.ndarray]:
    """Shuffle rows of images ``rows`` with hashes ``codes`` (n, V): ``bucket`` (the
    route: substring number and the substring's last ``route_bits`` bits), ``row``,
    ``tr`` (the variant, ``-1`` for a plain code's row) and ``code`` (the full code).

    Every variant goes to the route of its exact substring value; every plain code to
    every route within ``t`` bits of its own; :func:`_expand` then spreads each plain
    row over the buckets of its route within ``t`` bits of its value. With
    ``route_bits >= length`` the routes are the buckets."""
    n, v = codes.shape
    rows = np.asarray(rows, np.int64)
    plain = codes[:, 0]
    parts: list[tuple[np.ndarray, ...]] = []
    variant_rows = np.repeat(rows, v)
    variants = np.tile(np.arange(v, dtype=np.int16), n)
    flat = codes.reshape(-1)
    for k, ((start, length, t), r) in enumerate(zip(layout.substrings,
                                                   _route_bits(layout, route_bits),
                                                   strict=True)):
        if t < 0:
            continue
        base = np.int64(k) << np.int64(_KEY_BITS)
        low = start + length - r  # the routed bits: the substring's last r
        # every variant at its exact value's route ...
        parts.append((base | _substring(flat, low, r).astype(np.int64), variant_rows,
                      variants, flat))
        # ... every plain code at every route within t bits of its own
        masks = _flip_masks(r, min(t, r))
        keys = (_substring(plain, low, r)[:, None] ^ masks[None, :]).ravel()
        w = len(masks)
        parts.append((base | keys.astype(np.int64), np.repeat(rows, w),
                      np.full(n * w, -1, np.int16), np.repeat(plain, w)))
    names = ("bucket", "row", "tr", "code")
    return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}


def _expand(route: np.ndarray, row: np.ndarray, tr: np.ndarray, code: np.ndarray,
            layout: BucketLayout, route_bits: int) -> tuple[np.ndarray, ...]:
    """Routed rows -> bucket rows: a variant's bucket is its exact substring value; a
    plain row that reached route ``(k, low)`` goes to every bucket ``(k, high + low)``
    whose ``high`` bits lie within ``t - popcount(low ^ its own low)`` of its own, so
    that each plain code ends in every bucket within ``t`` bits of its value, once."""
    k_of = route >> np.int64(_KEY_BITS)
    routed_low = route & np.int64((1 << _KEY_BITS) - 1)
    out_bucket, out_row, out_tr, out_code = [], [], [], []
    for k, ((start, length, t), r) in enumerate(zip(layout.substrings,
                                                   _route_bits(layout, route_bits),
                                                   strict=True)):
        if t < 0:
            continue
        base = np.int64(k) << np.int64(_KEY_BITS)
        mine = np.flatnonzero(k_of == k)
        c, low = code[mine], routed_low[mine].astype(np.uint64)
        value = _substring(c, start, length)
        query = tr[mine] >= 0
        q = mine[query]
        out_bucket.append(base | value[query].astype(np.int64))
        out_row.append(row[q])
        out_tr.append(tr[q])
        out_code.append(code[q])
        if r == length:  # the routes are the buckets
            p = mine[~query]
            out_bucket.append(route[p])
            out_row.append(row[p])
            out_tr.append(tr[p])
            out_code.append(code[p])
            continue
        own_low = value & np.uint64((1 << r) - 1)
        used = popcount(own_low ^ low).astype(np.int64)
        high = value >> np.uint64(r)
        for d in range(min(t, r) + 1):
            sel = np.flatnonzero(~query & (used == d))
            if not len(sel):
                continue
            masks = _flip_masks(length - r, min(t - d, length - r))
            keys = ((high[sel, None] ^ masks[None, :]) << np.uint64(r)) | low[sel, None]
            w = len(masks)
            out_bucket.append(base | keys.ravel().astype(np.int64))
            out_row.append(np.repeat(row[mine[sel]], w))
            out_tr.append(np.full(len(sel) * w, -1, tr.dtype))
            out_code.append(np.repeat(c[sel], w))
    if not out_bucket:
        z = np.zeros(0, np.int64)
        return z, z, z, np.zeros(0, np.uint64)
    return (np.concatenate(out_bucket), np.concatenate(out_row), np.concatenate(out_tr),
            np.concatenate(out_code))


def _emit_part(part: pd.DataFrame, layout: BucketLayout, route_bits: int,
               transforms: tuple[Transform, ...], method: str,
               n_jobs: int | None) -> pd.DataFrame:
    """A partition of images -> its shuffle rows (stage 1)."""
    codes = near_hashes(_pixels_of(part["pixels"]), transforms, method=method, n_jobs=n_jobs)
    return pd.DataFrame(_emit(part["row"].to_numpy(np.int64), codes, layout, route_bits))


def _sample_part(part: pd.DataFrame, k: int, method: str) -> pd.DataFrame:
    """The plain codes of a partition's first ``k`` images (for :meth:`BucketLayout.auto`)."""
    head = part.iloc[:k]
    codes = near_hashes(_pixels_of(head["pixels"]), DEFAULT_TRANSFORMS[:1], method=method,
                        n_jobs=1)
    return pd.DataFrame({"code": codes[:, 0]})


def _pair_keys(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dense ids of the pairs ``(first, second)``, increasing with the pair."""
    if not len(first):
        return np.zeros(0, np.int64)
    order = np.lexsort((second, first))
    f, s = first[order], second[order]
    new = np.r_[True, (f[1:] != f[:-1]) | (s[1:] != s[:-1])]
    key = np.empty(len(first), np.int64)
    key[order] = np.cumsum(new) - 1
    return key


def _bucket_matches(bucket: np.ndarray, row: np.ndarray, tr: np.ndarray, code: np.ndarray,
                    layout: BucketLayout, radius: int) -> tuple[np.ndarray, ...]:
    """Every (variant, plain) hit within ``radius`` among bucket rows, each hit once.

    Returns ``(moving, fixed, tr, hamming, largest, comparisons)``: the image whose
    variant ``tr`` matched the plain code of ``fixed`` (as the in-memory search: a plain
    pair once, ``moving < fixed``; never an image with itself), the distances, the rows
    in the largest bucket and the comparisons made. The rows of a bucket must all be
    given together (other buckets may be given too); their order does not matter."""
    z = np.zeros(0, np.int64)
    if not len(bucket):
        return z, z, z, z, 0, 0
    plain = tr < 0
    # plain rows sorted by bucket, queries by bucket (for locality); each query then
    # meets the run of plain rows of its bucket
    p_at = np.flatnonzero(plain)
    p_at = p_at[np.argsort(bucket[p_at], kind="stable")]
    q_at = np.flatnonzero(~plain)
    q_at = q_at[np.argsort(bucket[q_at], kind="stable")]
    p_bucket, p_code, p_row = bucket[p_at], code[p_at], row[p_at]
    q_bucket, q_code, q_row, q_tr = bucket[q_at], code[q_at], row[q_at], tr[q_at]
    lo = np.searchsorted(p_bucket, q_bucket, side="left")
    per_query = np.searchsorted(p_bucket, q_bucket, side="right") - lo
    active = [(s, b, t) for s, b, t in layout.substrings if t >= 0]
    number = np.array([k for k, (_, _, t) in enumerate(layout.substrings) if t >= 0])
    out: list[tuple[np.ndarray, ...]] = []
    bounds = _budget_splits(per_query, _COMPARE_BUDGET)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        runs = per_query[a:b]
        total = int(runs.sum())
        if total == 0:
            continue
        q = np.repeat(np.arange(a, b), runs)
        p = np.repeat(lo[a:b] - (np.cumsum(runs) - runs), runs)
        p += np.arange(total)
        x = q_code[q] ^ p_code[p]
        d = popcount(x)
        hit = np.flatnonzero(d <= radius)  # few: only they are checked further
        q, p, x, d = q[hit], p[hit], x[hit], d[hit]
        # never an image with itself; a plain pair once, from its lower row
        hit = np.flatnonzero((q_row[q] != p_row[p]) & ((q_tr[q] != 0) | (q_row[q] < p_row[p])))
        if not len(hit):
            continue
        q, p, x, d = q[hit], p[hit], x[hit], d[hit]
        # keep a hit only in the bucket of the first substring on which it qualifies
        within = np.stack([popcount(_substring(x, s, length)) <= t
                           for s, length, t in active])
        first = number[np.argmax(within, axis=0)]
        keep = first == (q_bucket[q] >> np.int64(_KEY_BITS))
        q, p = q[keep], p[keep]
        out.append((q_row[q], p_row[p], q_tr[q].astype(np.int64), d[keep].astype(np.int64)))
    # the largest bucket: its plain rows and, where it has any, its queries
    p_runs = np.diff(np.r_[np.flatnonzero(np.r_[True, p_bucket[1:] != p_bucket[:-1]]),
                           len(p_bucket)]) if len(p_bucket) else z
    q_start = np.flatnonzero(np.r_[True, q_bucket[1:] != q_bucket[:-1]]) if len(q_bucket) else z
    q_runs = np.diff(np.r_[q_start, len(q_bucket)])
    largest = int(max(p_runs.max(initial=0), (q_runs + per_query[q_start]).max(initial=0)))
    comparisons = int(per_query.sum())
    if not out:
        return z, z, z, z, largest, comparisons
    return (*(np.concatenate([o[i] for o in out]) for i in range(4)), largest, comparisons)


def _closest_hits(moving: np.ndarray, fixed: np.ndarray, tr: np.ndarray,
                  hamming: np.ndarray, keep: int) -> tuple[np.ndarray, ...]:
    """(positions of each pair's ``keep`` closest hits, their pair keys; ``first`` and
    ``second`` of every hit) as :func:`_best_hits` keeps them in memory: by distance,
    then variant, then moving image (the in-memory hits come in that order)."""
    first, second = np.minimum(moving, fixed), np.maximum(moving, fixed)
    by_moving = np.argsort(moving, kind="stable")
    key = _pair_keys(first[by_moving], second[by_moving])
    kept = by_moving[_best_hits(key, hamming[by_moving], tr[by_moving], keep)]
    return kept, _pair_keys(first[kept], second[kept]), first, second


_HIT_COLUMNS = {"first": np.int64, "second": np.int64, "moving": np.int64, "tr": np.int64,
                "hamming": np.int64}


def _bucket_part(part: pd.DataFrame, layout: BucketLayout, route_bits: int,
                 radius: int) -> tuple[pd.DataFrame, tuple[int, ...]]:
    """A partition of shuffle rows -> (its hits, at most two per pair, as
    :func:`_closest_hits` keeps them; (shuffle rows, bucket rows, largest bucket,
    comparisons, hits)) (stage 2)."""
    bucket, row, tr, code = _expand(
        part["bucket"].to_numpy(np.int64), part["row"].to_numpy(np.int64),
        part["tr"].to_numpy(np.int64), part["code"].to_numpy(np.uint64), layout, route_bits)
    moving, fixed, tr, hamming, largest, comparisons = _bucket_matches(
        bucket, row, tr, code, layout, radius)
    kept, _, first, second = _closest_hits(moving, fixed, tr, hamming, 2)
    hits = pd.DataFrame({"first": first[kept], "second": second[kept],
                         "moving": moving[kept], "tr": tr[kept], "hamming": hamming[kept]})
    return hits, (len(part), len(bucket), largest, comparisons, len(moving))


def _pairs_part(part: pd.DataFrame, transforms: tuple[Transform, ...], threshold: float,
                n_jobs: int | None) -> tuple[pd.DataFrame, int]:
    """Hits with both images' pixels, all of each pair's together -> (one row per pair,
    verified and reduced by the in-memory engine's ``_pairs_table``; the number of
    pairs) (stage 3)."""
    if not len(part):
        return _empty_pairs(_PAIR_NAMES), 0
    # in memory, ties between a pair's hits go to the one of the lower moving image
    order = np.argsort(part["moving"].to_numpy(np.int64), kind="stable")
    first = part["first"].to_numpy(np.int64)[order]
    second = part["second"].to_numpy(np.int64)[order]
    moving = part["moving"].to_numpy(np.int64)[order]
    tr = part["tr"].to_numpy(np.int64)[order]
    hamming = part["hamming"].to_numpy(np.int64)[order]
    used, at = np.unique(np.concatenate([first, second]), return_index=True)
    sources = np.concatenate([part["px_first"].to_numpy(object)[order],
                              part["px_second"].to_numpy(object)[order]])
    pixels = _pixels_of(sources[at])
    at_first, at_second = np.searchsorted(used, first), np.searchsorted(used, second)
    at_moving = np.where(moving == first, at_first, at_second)
    at_fixed = np.where(moving == first, at_second, at_first)
    table = _pairs_table(pixels, at_moving, at_fixed, tr, hamming, at_first, at_second,
                         _PAIR_NAMES, threshold, transforms, n_jobs)
    for name in _PAIR_NAMES:  # local positions (in row order) -> rows
        table[name] = used[table[name].to_numpy(np.int64)]
    n_pairs = len(np.unique(at_first * len(used) + at_second))
    return table, n_pairs


# --------------------------------------------------------------------------- the search
def dataset_frame(dataset: Any, npartitions: int = 1) -> Any:
    """A Dask DataFrame of an in-memory dataset in the Parquet form's columns.

    ``row`` (int64), ``image_id`` (string), ``split`` (string), ``label`` (int8) and
    ``pixels`` (Arrow binary, 2304 bytes an image), cut into ``npartitions`` partitions in
    dataset order: the columns ``dask.dataframe.read_parquet`` gives for shards of
    ``dataset``, for tests and small runs (the data travel inside the task graph).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> frame = dataset_frame(demo_dataset(n_faces=300), npartitions=2)
    >>> frame.npartitions, list(frame.columns)
    (2, ['row', 'image_id', 'split', 'label', 'pixels'])
    """
    _, dd = _dask()
    import pyarrow as pa

    from ferclean.dataset import FaceDataset

    if not isinstance(dataset, FaceDataset):
        raise TypeError(f"dataset must be a FaceDataset; got {type(dataset).__name__}")
    ds = dataset
    n = len(ds)
    pixels = np.ascontiguousarray(ds.pixels, np.uint8)
    table = pa.table({
        "row": pa.array(ds.rows, pa.int64()),
        "image_id": pa.array(np.asarray(ds.ids, dtype=object).tolist(), pa.string()),
        "split": pa.array(np.asarray(ds.split_names, dtype=object).tolist(), pa.string()),
        "label": pa.array(ds.labels, pa.int8()),
        "pixels": pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(_PIXEL_BYTES), n, [None, pa.py_buffer(pixels.tobytes())]),
    })
    # pixels as Arrow binary: dask would turn a column of bytes objects into strings
    binary = table.schema.field("pixels").type
    frame = table.to_pandas(types_mapper=lambda t: _binary_dtype() if t == binary else None)
    return dd.from_pandas(frame, npartitions=max(1, int(npartitions)), sort=False)


def dask_near_pairs(frame: Any, *, radius: int = 8, similarity: float = 0.97,
                    mirror: bool = False, method: str = "phash", backend: str = "mih",
                    n_jobs: int | None = 1, min_similarity: float | None = None,
                    layout: BucketLayout | None = None,
                    bucket_partitions: int | None = None,
                    route_bits: int | None = None) -> pd.DataFrame:
    """Near-duplicate pairs of a Dask DataFrame of images, never gathering the pixels.

    The same pairs as ``NearDuplicateIndex(radius=..., similarity=..., mirror=...,
    method=...).fit(pixels).pairs(min_similarity)`` on the images in ``row`` order, with
    positions replaced by ``row`` (see the module notes for the stages). Only the pair
    table and a sample of hashes (to choose the layout) reach the client.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame
        One image per row with columns ``row`` (int, unique) and ``pixels`` (2304 bytes,
        the 48x48 image row-major, as the Parquet form stores it); other columns are
        ignored.
    radius, similarity, mirror, method :
        As for :class:`~ferclean.similarity.near.NearDuplicateIndex`.
    backend : {"mih", "brute"}, default="mih"
        ``"mih"``: the bucket shuffle with ``layout``; ``"brute"``: one bucket
        (:meth:`BucketLayout.brute`), every pair compared.
    n_jobs : int, default=1
        Threads per task for hashing and verification (the workers run tasks in
        parallel already); ``None`` uses every core.
    min_similarity : float, default=None
        As for :meth:`~ferclean.similarity.near.NearDuplicateIndex.pairs`.
    layout : BucketLayout, default=None
        The substrings of the bucket shuffle; ``None`` chooses one with
        :meth:`BucketLayout.auto` from the hashes of up to 600 images spread over the
        partitions. The pairs do not depend on it, only the work does.
    bucket_partitions : int, default=None
        Partitions of the bucket shuffle; ``None``: enough for ~4M bucket rows each, at
        least ``frame.npartitions``.
    route_bits : int, default=None
        The shuffle routes each row on its substring number and the substring's last
        ``route_bits`` bits, and the plain rows are spread over the exact buckets inside
        the partitions: a plain code crosses the shuffle ``C(route_bits, <= t)`` times
        rather than ``C(length, <= t)``. ``None``: ``log2(bucket_partitions) + 4`` (at
        least 4), enough routes to spread the buckets evenly; 56 (or any value at least
        the substrings' length) shuffles on the exact ``(substring, value)`` buckets.

    Returns
    -------
    DataFrame
        ``row_i < row_j`` (the two images' ``row``), ``hamming`` (smallest distance of a
        variant's hash to the other's plain hash), ``similarity``, ``transform`` (the best
        alignment), ``kind`` (``"exact"``, ``"mirror"`` or ``"near"``); sorted by
        ``(row_i, row_j)``. ``attrs["near_search"]`` holds the run's
        :class:`NearSearchStats`.

    Raises
    ------
    ValueError
        A parameter out of range, a layout that could miss pairs, a frame without
        ``row`` or ``pixels``, or an image whose pixels are not 2304 bytes (naming its
        row).

    Notes
    -----
    What moves: the bucket shuffle (~26 bytes a row, ``shuffle_rows`` of them), then the
    hits (two per pair per bucket partition at most) and, in the two joins, every image's
    pixels twice (once a join). A bucket partition holds ~4M bucket rows by default, so memory per
    worker follows ``bucket_partitions`` and the frame's partitions, not the number of
    images; the one thing that grows with it is the largest bucket, which
    :meth:`BucketLayout.auto` keeps small by lengthening the substrings. Hashing and
    verification are the in-memory engine's code, whose results do not depend on how
    the images are batched (tested), so the pairs are the in-memory ones exactly when
    the workers round floats as the machine compared with does (the same CPU kind and
    BLAS).

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> from ferclean.similarity.near import NearDuplicateIndex
    >>> ds = demo_dataset(n_faces=300)
    >>> found = dask_near_pairs(dataset_frame(ds, npartitions=3))
    >>> memory = NearDuplicateIndex().fit(ds).pairs()
    >>> found[["row_i", "row_j"]].values.tolist() == memory[["i", "j"]].values.tolist()
    True
    >>> found.attrs["near_search"].verified_pairs == len(found)
    True
    """
    dask, dd = _dask()
    _check_params(radius, similarity, method, backend)
    threshold = float(similarity if min_similarity is None else min_similarity)
    if min_similarity is not None:
        from ferclean._validation import check_fraction

        check_fraction(min_similarity, "min_similarity", low=-1.0, high=1.0)
    missing = [c for c in ("row", "pixels") if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks column(s) {', '.join(missing)}; it needs row and "
                         "pixels (the Parquet form's columns)")
    radius = int(radius)
    transforms = _with_mirror(DEFAULT_TRANSFORMS) if mirror else DEFAULT_TRANSFORMS
    images = frame[["row", "pixels"]].map_partitions(
        _as_image_columns, meta={"row": np.int64, "pixels": _binary_dtype()})
    count = images["row"].map_partitions(len).sum()
    if backend == "brute" and layout is None:
        layout = BucketLayout.brute(radius)
    if layout is None:  # the image count and a sample of hashes, in one pass
        spread = np.unique(np.linspace(0, images.npartitions - 1,
                                       min(images.npartitions, 8)).astype(int))
        sample = images.partitions[spread.tolist()].map_partitions(
            _sample_part, -(-_SAMPLE // len(spread)), method, meta={"code": np.uint64})
        n_images, sample = dask.compute(count, sample)
        n_images = int(n_images)
        layout = BucketLayout.auto(
            sample["code"].to_numpy(np.uint64), n_images, len(transforms), radius,
            route_bits=_default_route_bits(max(images.npartitions,
                                               ceil(n_images * 256 / _BUCKET_ROWS))))
    else:
        n_images = int(count.compute())
    layout.check(radius)
    n_rows = n_images * layout.rows_per_image(len(transforms))
    if bucket_partitions is None:
        bucket_partitions = max(images.npartitions, ceil(n_rows / _BUCKET_ROWS))
    bucket_partitions = _check_int(bucket_partitions, "bucket_partitions", 1, 2**31)
    route_bits = (_default_route_bits(bucket_partitions) if route_bits is None
                  else _check_int(route_bits, "route_bits", 0, _KEY_BITS))

    emitted = images.map_partitions(
        _emit_part, layout, route_bits, transforms, method, n_jobs,
        meta={"bucket": np.int64, "row": np.int64, "tr": np.int16, "code": np.uint64})
    routed = emitted.shuffle(on="bucket", npartitions=bucket_partitions, ignore_index=True)
    searched = [dask.delayed(_bucket_part, nout=2)(part, layout, route_bits, radius)
                for part in routed.to_delayed()]
    hits = dd.from_delayed([s[0] for s in searched], meta=_HIT_COLUMNS, verify_meta=False)
    # hash joins (never broadcast): the second one leaves every hit of a pair, which
    # all have the same second image, in one partition
    for side in ("first", "second"):
        hits = hits.merge(images.rename(columns={"row": side, "pixels": f"px_{side}"}),
                          on=side, how="inner", broadcast=False)
    verified = [dask.delayed(_pairs_part, nout=2)(part, transforms, threshold, n_jobs)
                for part in hits.to_delayed()]
    tables, bucket_stats, pair_counts = dask.compute(
        [v[0] for v in verified], [s[1] for s in searched], [v[1] for v in verified])
    nonempty = [t for t in tables if len(t)]
    result = (pd.concat(nonempty, ignore_index=True) if nonempty
              else _empty_pairs(_PAIR_NAMES))
    result = result.sort_values(list(_PAIR_NAMES), kind="stable").reset_index(drop=True)
    if result.duplicated(list(_PAIR_NAMES)).any():  # the joins did not keep pairs together
        raise RuntimeError("dask_near_pairs: a pair's hits were verified in two partitions; "
                           "the merges must be hash joins")
    stats = np.array(bucket_stats, np.int64).reshape(-1, 5)
    result.attrs["near_search"] = NearSearchStats(
        n_images=n_images, layout=layout, route_bits=route_bits,
        bucket_partitions=bucket_partitions, shuffle_rows=int(stats[:, 0].sum()),
        bucket_rows=int(stats[:, 1].sum()), largest_bucket=int(stats[:, 2].max(initial=0)),
        comparisons=int(stats[:, 3].sum()), hash_hits=int(stats[:, 4].sum()),
        candidate_pairs=int(sum(pair_counts)), verified_pairs=len(result))
    return result
