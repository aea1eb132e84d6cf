"""Exact Hamming-radius search over binary hash codes, and grouping of the pairs found.

:class:`HammingIndex` finds **every** pair of codes within a Hamming radius ``r``, with no
pair missed, in sub-quadratic time on well-spread codes. The default backend is
*multi-index hashing* (Norouzi, Punjani & Fleet, "Fast exact search in Hamming space with
multi-index hashing", TPAMI 2014): each code is cut into ``m`` contiguous substrings and
one lookup table is built per substring. By the generalised pigeonhole principle, two
codes within distance ``r`` agree to within ``t_i`` bits on at least one substring ``i``
whenever ``sum(t_i + 1) = r + 1``; so probing, for every query substring, the table keys
within ``t_i`` bits of it returns a candidate set that contains every true neighbour.
Candidates are then checked on their full codes. Each pair is kept only from the first
substring that finds it, so no pair is reported twice and no sort is needed to remove
duplicates. The ``"brute"`` backend compares every query with every code (what
imagededup's ``BruteForce`` does, vectorised with numpy popcounts); it is the reference
the tests check the default against.

Codes are ``uint64`` arrays: shape ``(n,)`` for codes of up to 64 bits, ``(n, words)``
for longer ones (as :func:`ferclean.similarity.hashing.hash_images` returns them). Results are
:class:`Matches` of three aligned arrays in a documented, deterministic order.

:func:`group_pairs` turns pairs into connected components ("union-find") with
:func:`ferclean.similarity.exact.group_ids_from_labels` numbering.
"""

from __future__ import annotations

import os
from math import comb
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_scalar
from sklearn.utils.validation import check_is_fitted

from ferclean.similarity.hashing import as_code_matrix, map_blocks, popcount

__all__ = ["BACKENDS", "HammingIndex", "Matches", "group_pairs", "hamming_distance"]

#: Search backends of :class:`HammingIndex`.
BACKENDS: tuple[str, ...] = ("mih", "brute")

# Lookup tables up to this many key bits are direct-addressed arrays (O(1) probes);
# longer substrings use a sorted key array and binary search.
_DIRECT_BITS = 22
# Work per chunk: probes (query substrings x flip masks) and candidates held at once.
# About 8 bytes x a few arrays each: ~100-200 MB peak, enough to keep numpy calls large.
_PROBE_BUDGET = 1 << 21
_CANDIDATE_BUDGET = 1 << 22
# Relative cost of one probe (a distinct query key XOR a flip mask: table reads, the
# bucket's positions) to one candidate check (gathers, XOR, popcount, compare), for
# choosing the substrings: about 1, measured on numpy for 16- to 22-bit tables (~7 ns each
# on the 2-core development machine).
_PROBE_COST = 1.0
# Codes sampled (all their pairs) to measure substring distances when choosing the
# substrings: 600 codes give ~180k pairs.
_PAIR_SAMPLE = 600


class Matches(NamedTuple):
    """Pairs found by a search: three aligned arrays.

    ``query`` and ``index`` are positions (``int64``) into the query codes and the fitted
    codes (for :meth:`HammingIndex.pairs`, both into the fitted codes, ``query < index``);
    ``distance`` is the Hamming distance (``int64``).

    Examples
    --------
    >>> import numpy as np
    >>> m = HammingIndex(radius=1).fit(np.array([0, 1], np.uint64)).pairs()
    >>> len(m), m.query.tolist(), m.index.tolist(), m.distance.tolist()
    (1, [0], [1], [1])
    """

    query: np.ndarray
    index: np.ndarray
    distance: np.ndarray

    def __len__(self) -> int:  # the number of pairs, not the tuple's three fields
        return int(self.query.shape[0])


def _empty_matches() -> Matches:
    z = np.zeros(0, np.int64)
    return Matches(z, z.copy(), z.copy())


def _check_int(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]``, through :func:`sklearn.utils.check_scalar`,
    whose messages say what was received and which bound it broke.

    Examples
    --------
    >>> _check_int(np.int64(3), "radius", 0, 64)
    3
    >>> _check_int(2.5, "radius", 0, 64)
    Traceback (most recent call last):
    ...
    TypeError: radius must be an instance of int, not float.
    """
    # check_scalar takes True and False for 1 and 0 (bool is an Integral); a flag passed
    # where a count belongs is a mistake, so it is refused here first.
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an instance of int, not bool.")
    return int(check_scalar(value, name, target_type=Integral, min_val=low, max_val=high))


def _check_radius(radius: Any, n_bits: int) -> int:
    """A Hamming radius: an integer in ``[0, n_bits]``.

    Examples
    --------
    >>> _check_radius(65, 64)
    Traceback (most recent call last):
    ...
    ValueError: radius == 65, must be <= 64.
    """
    return _check_int(radius, "radius", 0, n_bits)


def hamming_distance(a: Any, b: Any) -> np.ndarray:
    """Hamming distance between aligned codes ``a`` and ``b`` (broadcasting rows).

    Parameters
    ----------
    a, b : array-like of uint64, shape (n,) or (n, words)

    Returns
    -------
    ndarray of int64, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> hamming_distance(np.array([0b1011], np.uint64), np.array([0b0001], np.uint64))
    array([2])
    """
    a, b = as_code_matrix(a), as_code_matrix(b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"codes have {a.shape[1]} and {b.shape[1]} words; they must match")
    return popcount(a ^ b).sum(axis=1, dtype=np.int64)


def _flip_masks(length: int, t: int) -> np.ndarray:
    """Every ``length``-bit mask with at most ``t`` bits set, by increasing popcount."""
    masks = [np.zeros(1, np.uint64)]
    bits = np.uint64(1) << np.arange(length, dtype=np.uint64)
    level = np.zeros(1, np.uint64)
    top = np.full(1, -1, np.int64)  # highest bit set in each mask of the current level
    for _ in range(min(t, length)):
        # extend each mask with one bit above its highest: every subset exactly once
        reps = length - 1 - top
        src = np.repeat(np.arange(len(level)), reps)
        start = np.repeat(top + 1, reps)
        offs = np.arange(len(src)) - np.repeat(np.cumsum(reps) - reps, reps)
        new_top = start + offs
        level = level[src] | bits[new_top]
        top = new_top
        masks.append(level)
    return np.concatenate(masks)


def _n_probes(length: int, t: int) -> int:
    return sum(comb(length, k) for k in range(t + 1)) if t >= 0 else 0


def _split_bits(n_bits: int, m: int) -> list[tuple[int, int]]:
    """``m`` contiguous (start, length) substrings covering ``n_bits``, lengths within 1."""
    base, extra = divmod(n_bits, m)
    out, start = [], 0
    for i in range(m):
        length = base + (1 if i < extra else 0)
        out.append((start, length))
        start += length
    return out


def _thresholds(lengths: list[int], radius: int) -> list[int]:
    """Per-substring radii ``t_i`` with ``sum(t_i + 1) = radius + 1`` (pigeonhole).

    Spread evenly; any remainder goes to the longest substrings, whose tables are the most
    selective. A substring with ``t_i = -1`` is not probed at all.
    """
    m = len(lengths)
    budget = radius + 1  # sum of (t_i + 1)
    base, extra = divmod(budget, m)
    order = np.argsort(-np.asarray(lengths), kind="stable")
    t = [base - 1] * m
    for i in order[:extra]:
        t[int(i)] += 1
    return t


def _layouts(n_bits: int, m: int, radius: int) -> list[list[int]]:
    """Candidate substring lengths for ``m`` substrings: equal, or with the substrings
    that get the larger radius ``t_i`` made longer (their probes multiply, so their
    tables should be the most selective)."""
    equal = [length for _, length in _split_bits(n_bits, m)]
    t = _thresholds(equal, radius)
    n_hi = sum(1 for ti in t if ti == max(t))
    out = [equal]
    if n_hi == m or m == 1:
        return out
    base = n_bits // m
    for hi in range(base + 1, min(base + 10, 64) + 1):
        rest = n_bits - hi * n_hi
        if rest < (m - n_hi) or -(-rest // (m - n_hi)) > 64:
            continue
        lo, extra = divmod(rest, m - n_hi)
        lengths = [hi] * n_hi + [lo + (1 if i < extra else 0) for i in range(m - n_hi)]
        if max(lengths[n_hi:]) < hi:  # the long ones must stay the longest
            out.append(lengths)
    return out


def _choose_substrings(codes: np.ndarray, radius: int,
                       m_fixed: int | None = None) -> list[tuple[int, int]]:
    """The substring layout with the least expected work on these codes.

    Per query, substring ``i`` costs ``C(b_i, <= t_i)`` probes plus ``n * P(d_i <= t_i)``
    candidates, where ``P`` is the chance that two codes lie within ``t_i`` bits of each
    other on that substring. ``P`` is measured on all pairs of a sample of the codes:
    for uniformly spread codes it is ``C(b, <= t) / 2^b`` (and the best ``m`` is near
    ``n_bits / log2(n)``, Norouzi et al.), for clustered ones such as the hashes of
    aligned faces it is far larger, and fewer, longer substrings win, the ones searched
    to the larger radius longest.
    """
    n, words = codes.shape
    n_bits = 64 * words
    idx = np.linspace(0, n - 1, min(n, _PAIR_SAMPLE)).astype(np.int64)  # deterministic
    sample = codes[idx]
    first, second = np.triu_indices(len(sample), k=1)
    xor = sample[first] ^ sample[second]  # (pairs, words)
    best, best_cost = _split_bits(n_bits, 1), np.inf
    lo = max(1, -(-n_bits // 64))
    ms = [m_fixed] if m_fixed is not None else range(lo, min(radius + 1, n_bits) + 1)
    within: dict[Any, float] = {}
    for m in ms:
        for lengths in _layouts(n_bits, m, radius):
            starts = np.cumsum([0, *lengths[:-1]])
            parts = [(int(st), int(length)) for st, length in zip(starts, lengths, strict=True)]
            t = _thresholds(lengths, radius)
            cost = 0.0
            for (start, length), ti in zip(parts, t, strict=True):
                if ti < 0:
                    continue
                key = (start, length, ti)
                if key not in within:
                    if (start, length) not in within:
                        within[start, length] = (popcount(_extract(xor, start, length))
                                                 if len(xor) else np.zeros(0))
                    d = within[start, length]
                    probes = _n_probes(length, ti)
                    within[key] = max(float(np.mean(d <= ti)) if len(d) else 0.0,
                                      probes / 2.0**length)
                    # queries that share a key share its probes: about 1 + n * P(d = 0)
                    # of them per distinct key
                    same = max(float(np.mean(d == 0)) if len(d) else 0.0, 2.0**-length)
                    within[key, "probe"] = probes / (1.0 + n * same)
                cost += within[key, "probe"] * _PROBE_COST + max(n - 1, 0) * within[key]
            if cost < best_cost:
                best, best_cost = parts, cost
    return best


def _extract(codes: np.ndarray, start: int, length: int) -> np.ndarray:
    """Bits ``[start, start + length)`` of each code (bit 0 = MSB of word 0) as uint64."""
    word, off = divmod(start, 64)
    mask = np.uint64((1 << length) - 1) if length < 64 else np.uint64(2**64 - 1)
    if off + length <= 64:
        return (codes[:, word] >> np.uint64(64 - off - length)) & mask
    hi_len = 64 - off
    lo_len = length - hi_len
    hi = codes[:, word] & np.uint64((1 << hi_len) - 1)
    return (hi << np.uint64(lo_len)) | (codes[:, word + 1] >> np.uint64(64 - lo_len))


class _Table:
    """One substring's lookup table: fitted positions (and codes) grouped by key."""

    def __init__(self, keys: np.ndarray, length: int, codes: np.ndarray) -> None:
        self.order = np.argsort(keys, kind="stable").astype(np.int64)
        # table positions fit in int32 for < 2^31 codes: half the memory traffic
        self.pos_dtype = np.int32 if len(keys) < 2**31 else np.int64
        # the codes in table order, so a bucket's codes are one contiguous run
        self.codes = codes[self.order]
        self.direct = length <= _DIRECT_BITS
        # direct tables are indexed by the keys themselves: keep them as intp
        self.key_dtype = np.intp if self.direct else np.uint64
        if self.direct:
            counts = np.bincount(keys.astype(np.int64), minlength=1 << length)
            self.sizes = counts.astype(self.pos_dtype)
            self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(self.pos_dtype)
        else:
            self.sorted_keys = keys[self.order]

    def counts(self, probe: np.ndarray) -> np.ndarray:
        """Number of fitted codes under each probed key (``key_dtype`` keys)."""
        if self.direct:
            return self.sizes[probe]
        lo = np.searchsorted(self.sorted_keys, probe, side="left")
        hi = np.searchsorted(self.sorted_keys, probe, side="right")
        return (hi - lo).astype(self.pos_dtype)

    def starts(self, probe: np.ndarray) -> np.ndarray:
        """Table position of the first fitted code under each probed key."""
        if self.direct:
            return self.offsets[probe]
        return np.searchsorted(self.sorted_keys, probe, side="left").astype(self.pos_dtype)


class HammingIndex(BaseEstimator):
    """Every code within a Hamming radius: exact, sub-quadratic multi-index hashing.

    Parameters
    ----------
    radius : int, default=8
        Default search radius (inclusive), ``0..n_bits``. ``query`` and ``pairs`` accept
        another; the tables do not depend on it, only their tuning does.
    backend : {"mih", "brute"}, default="mih"
        ``"mih"``: multi-index hashing (exact). ``"brute"``: compare with every code
        (exact, quadratic; the reference).
    n_substrings : int, default=None
        Substrings for ``"mih"``; ``None`` picks the count minimising the expected work
        for ``radius``, estimated from the codes' measured substring collision rates.
    n_jobs : int, default=None
        Threads for searching; ``None`` uses every core. Results do not depend on it.

    Attributes
    ----------
    codes_ : ndarray of uint64, shape (n, words)
        The fitted codes, as a 2-D array.
    n_bits_ : int
        ``64 * words``.
    substrings_ : list of (start, length)
        The bit ranges of the tables (``"mih"`` only).

    See Also
    --------
    ferclean.similarity.hashing.hash_images : make the codes.
    group_pairs : connected components of the pairs found.

    Notes
    -----
    Every result is sorted: :meth:`query` by (query, distance, index) and :meth:`pairs` by
    (first, second); self-matches are excluded from :meth:`pairs` (and from
    :meth:`query` when ``exclude_self=True``, for querying the fitted codes themselves).
    Both raise :class:`sklearn.exceptions.NotFittedError` before :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> codes = np.array([0b0000, 0b0011, 0b1111, 0b0001], dtype=np.uint64)
    >>> index = HammingIndex(radius=2).fit(codes)
    >>> [tuple(map(int, p)) for p in zip(*index.pairs())]
    [(0, 1, 2), (0, 3, 1), (1, 2, 2), (1, 3, 1)]
    >>> m = index.query(np.array([0b0111], np.uint64), radius=1)
    >>> m.index.tolist(), m.distance.tolist()
    ([1, 2], [1, 1])
    """

    def __init__(self, *, radius: int = 8, backend: str = "mih",
                 n_substrings: int | None = None, n_jobs: int | None = None) -> None:
        self.radius = radius
        self.backend = backend
        self.n_substrings = n_substrings
        self.n_jobs = n_jobs

    # ------------------------------------------------------------------ fitting
    def fit(self, codes: Any) -> HammingIndex:
        """Build the index over ``codes`` (uint64, shape ``(n,)`` or ``(n, words)``).

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> HammingIndex(radius=2).fit(np.arange(1000, dtype=np.uint64)).n_bits_
        64
        """
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got "
                             f"{self.backend!r}")
        codes = as_code_matrix(codes)
        self.codes_ = np.ascontiguousarray(codes)
        self.n_bits_ = 64 * codes.shape[1]
        radius = _check_radius(self.radius, self.n_bits_)
        self._tables: list[_Table] = []
        self.substrings_: list[tuple[int, int]] = []
        if self.backend == "mih":
            m = self.n_substrings
            if m is not None:  # at least one substring per 64-bit word, at most one per bit
                m = _check_int(m, "n_substrings", -(-self.n_bits_ // 64), self.n_bits_)
            self.substrings_ = _choose_substrings(self.codes_, radius, m)
            for start, length in self.substrings_:
                self._tables.append(_Table(_extract(self.codes_, start, length), length,
                                           self.codes_[:, 0] if self.codes_.shape[1] == 1
                                           else self.codes_))
        return self

    def _check_fitted(self) -> None:
        # sklearn's NotFittedError (a ValueError and an AttributeError), as every
        # estimator raises it, so callers can catch one error for all of them
        check_is_fitted(self, "codes_", msg="This %(name)s is not fitted yet; call "
                        "fit(codes) first.")

    # ------------------------------------------------------------------ searching
    def query(self, codes: Any, radius: int | None = None, *,
              exclude_self: bool = False) -> Matches:
        """Every fitted code within ``radius`` of each query code.

        Parameters
        ----------
        codes : array-like of uint64, shape (q,) or (q, words)
        radius : int, default=None
            ``None`` uses the index's ``radius``.
        exclude_self : bool, default=False
            Drop matches of query ``k`` with fitted code ``k`` (when querying the fitted
            codes themselves).

        Returns
        -------
        Matches
            ``query`` (position in ``codes``), ``index`` (position in the fitted codes),
            ``distance``; sorted by query, then distance, then index.

        Examples
        --------
        >>> import numpy as np
        >>> index = HammingIndex(radius=1).fit(np.array([1, 2, 3], np.uint64))
        >>> m = index.query(np.array([3], np.uint64))
        >>> m.index.tolist(), m.distance.tolist()
        ([2, 0, 1], [0, 1, 1])
        """
        self._check_fitted()
        q = as_code_matrix(codes)
        if q.shape[1] != self.codes_.shape[1]:
            raise ValueError(f"query codes have {q.shape[1]} word(s); the index has "
                             f"{self.codes_.shape[1]}")
        r = _check_radius(self.radius if radius is None else radius, self.n_bits_)
        found = self._search(q, r, upper_only=False)
        if exclude_self and len(found):
            keep = found.query != found.index
            found = Matches(found.query[keep], found.index[keep], found.distance[keep])
        order = np.lexsort((found.index, found.distance, found.query))
        return Matches(found.query[order], found.index[order], found.distance[order])

    def pairs(self, radius: int | None = None) -> Matches:
        """Every pair ``i < j`` of fitted codes within ``radius``, sorted by ``(i, j)``.

        Examples
        --------
        >>> import numpy as np
        >>> index = HammingIndex(radius=0).fit(np.array([5, 7, 5, 5], np.uint64))
        >>> index.pairs().index.tolist()
        [2, 3, 3]
        """
        self._check_fitted()
        r = _check_radius(self.radius if radius is None else radius, self.n_bits_)
        found = self._search(self.codes_, r, upper_only=True)
        order = np.lexsort((found.index, found.query))
        return Matches(found.query[order], found.index[order], found.distance[order])

    # ------------------------------------------------------------------ backends
    def _search(self, q: np.ndarray, r: int, *, upper_only: bool) -> Matches:
        if len(q) == 0 or len(self.codes_) == 0:
            return _empty_matches()
        if self.backend == "brute":
            return self._brute(q, r, upper_only)
        return self._mih(q, r, upper_only)

    def _brute(self, q: np.ndarray, r: int, upper_only: bool) -> Matches:
        codes = self.codes_
        n = len(codes)
        # chunk queries so the (chunk, n) distance matrix stays ~32 MB
        step = max(1, (1 << 22) // max(n, 1))
        parts = []
        for s in range(0, len(q), step):
            block = q[s:s + step]
            d = np.zeros((len(block), n), np.int64)
            for w in range(codes.shape[1]):
                d += popcount(block[:, w, None] ^ codes[None, :, w])
            hit = d <= r
            if upper_only:
                hit &= np.arange(n)[None, :] > np.arange(s, s + len(block))[:, None]
            qi, ci = np.nonzero(hit)
            parts.append((qi + s, ci, d[qi, ci]))
        return Matches(*(np.concatenate([p[k] for p in parts]).astype(np.int64)
                         for k in range(3)))

    def _mih(self, q: np.ndarray, r: int, upper_only: bool) -> Matches:
        t = _thresholds([length for _, length in self.substrings_], r)
        probes = sum(_n_probes(length, ti) for (_, length), ti in zip(self.substrings_, t,
                                                                       strict=True))
        if probes >= len(self.codes_):
            # a radius too large for the substrings: probing every key near a query
            # would cost more than comparing it with every code
            return self._brute(q, r, upper_only)
        flips = [_flip_masks(length, ti) if ti >= 0 else None
                 for (_, length), ti in zip(self.substrings_, t, strict=True)]
        # query blocks run on threads (numpy releases the GIL in these loops); blocks
        # are joined in order, so the result does not depend on the threads
        # few, large blocks: queries within a block share the probes of a common key
        step = max(1024, -(-len(q) // (2 * _n_threads(self.n_jobs))))
        starts = list(range(0, len(q), step))
        results: list[Any] = [None] * len(starts)

        def work(k: int) -> None:
            results[k] = self._mih_block(q, starts[k], min(len(q), starts[k] + step), r,
                                         t, flips, upper_only)

        map_blocks(work, len(starts), 1, self.n_jobs)
        self.n_candidates_ = sum(res[3] for res in results)
        parts = [res for res in results if len(res[0])]
        if not parts:
            return _empty_matches()
        # A pair within r can lie within t_i on several substrings and so be found more
        # than once; the true matches are few, so drop repeats here, not per candidate.
        qa, ia, da = (np.concatenate([p[k] for p in parts]) for k in range(3))
        _, first = np.unique(qa * len(self.codes_) + ia, return_index=True)
        return Matches(qa[first], ia[first], da[first])

    def _mih_block(self, q: np.ndarray, q_start: int, q_stop: int, r: int, t: list[int],
                   flips: list[Any], upper_only: bool) -> tuple[Any, Any, Any, int]:
        """Multi-index search for queries ``q_start:q_stop``: (query, index, distance,
        candidates checked)."""
        one_word = q.shape[1] == 1
        q1 = q[:, 0] if one_word else q
        out_q, out_i, out_d = [], [], []
        n_cand = 0
        for (start, length), table, ti, fl in zip(self.substrings_, self._tables, t, flips,
                                                  strict=True):
            if ti < 0:
                continue
            keys = _extract(q[q_start:q_stop], start, length).astype(table.key_dtype)
            fl = fl.astype(table.key_dtype)
            width = len(fl)
            # Queries sharing a key (common: clustered codes, or many variants of one
            # image) share their probes: sort the queries by key and probe each distinct
            # key once, a bounded number of keys at a time.
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            run_start = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
            run_len = np.diff(np.r_[run_start, len(keys)])
            ukeys = sorted_keys[run_start]
            k_step = max(1, _PROBE_BUDGET // width)
            for k0 in range(0, len(ukeys), k_step):
                k1 = min(len(ukeys), k0 + k_step)
                probe = (ukeys[k0:k1, None] ^ fl[None, :]).ravel()
                counts = table.counts(probe)
                per_key = counts.reshape(-1, width).sum(axis=1, dtype=np.int64)
                nz = np.flatnonzero(counts)
                c = counts[nz]
                # the candidate positions of every distinct key, concatenated
                key_pos = np.repeat(table.starts(probe[nz])
                                    - (np.cumsum(c, dtype=table.pos_dtype) - c), c)
                key_pos += np.arange(len(key_pos), dtype=table.pos_dtype)
                # the candidates' codes, gathered once per key rather than once per query
                key_codes = table.codes[key_pos]
                key_start = (np.cumsum(per_key) - per_key).astype(table.pos_dtype)
                q_lo, q_hi = run_start[k0], run_start[k1] if k1 < len(ukeys) else len(keys)
                queries = order[q_lo:q_hi]  # block positions, grouped by key
                key_of = np.repeat(np.arange(k1 - k0), run_len[k0:k1])
                per_query = per_key[key_of]
                bounds = _budget_splits(per_query, _CANDIDATE_BUDGET)
                for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                    runs = per_query[a:b]
                    total = int(runs.sum())
                    if total == 0:
                        continue
                    n_cand += total
                    first = np.flatnonzero(runs)
                    runs_nz = runs[first]
                    # where in key_pos each (query, candidate) is: its key's run, in order
                    at = np.repeat(key_start[key_of[a:b][first]]
                                   - (np.cumsum(runs_nz) - runs_nz).astype(table.pos_dtype),
                                   runs_nz)
                    at += np.arange(total, dtype=table.pos_dtype)
                    x = np.repeat(q1[q_start + queries[a:b]], runs, axis=0)
                    x ^= key_codes[at]
                    d = popcount(x) if one_word else popcount(x).sum(axis=1)
                    hit = np.flatnonzero(d <= r)
                    if not len(hit):
                        continue
                    # only the few hits need their query and table position recovered
                    qpos = q_start + queries[a:b][np.searchsorted(np.cumsum(runs), hit,
                                                                  side="right")]
                    cand = table.order[key_pos[at[hit]]]
                    if upper_only:
                        keep = cand > qpos
                        qpos, cand, hit = qpos[keep], cand[keep], hit[keep]
                    out_q.append(qpos.astype(np.int64))
                    out_i.append(cand)
                    out_d.append(d[hit].astype(np.int64))
        if not out_q:
            z = np.zeros(0, np.int64)
            return z, z, z, n_cand
        return np.concatenate(out_q), np.concatenate(out_i), np.concatenate(out_d), n_cand


def _n_threads(n_jobs: int | None) -> int:
    return (os.cpu_count() or 1) if n_jobs is None else max(1, int(n_jobs))


def _budget_splits(per_query: np.ndarray, budget: int) -> np.ndarray:
    """Boundaries splitting consecutive queries into runs of at most ~``budget`` items."""
    if per_query.sum() <= budget:
        return np.array([0, len(per_query)])
    cum = np.cumsum(per_query)
    cuts = np.searchsorted(cum, np.arange(budget, int(cum[-1]), budget), side="right")
    cuts = np.unique(np.clip(cuts, 1, len(per_query) - 1))
    return np.concatenate([[0], cuts, [len(per_query)]])


def group_pairs(n: int, first: Any, second: Any) -> np.ndarray:
    """Connected components of the pairs, as group ids (``-1`` for items in no pair).

    Union-find over the pairs, done by :func:`scipy.sparse.csgraph.connected_components`;
    groups are numbered 0.. in order of their first item (as
    :func:`ferclean.similarity.exact.group_ids_from_labels` numbers them).

    Parameters
    ----------
    n : int
        Number of items.
    first, second : array-like of int
        The pairs, as aligned positions.

    Returns
    -------
    ndarray of int64, shape (n,)

    Examples
    --------
    >>> group_pairs(6, [4, 0, 1], [5, 1, 3]).tolist()
    [0, 0, -1, 0, 1, 1]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ferclean.similarity.exact import group_ids_from_labels

    first = np.asarray(first, np.int64).ravel()
    second = np.asarray(second, np.int64).ravel()
    if n == 0:
        return np.zeros(0, np.int64)
    graph = coo_matrix((np.ones(len(first), np.int8), (first, second)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return group_ids_from_labels(labels)
