"""Exact Hamming search: multi-index hashing against brute force, and grouping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from ferclean.similarity.near import NearDuplicateIndex
from ferclean.similarity.search import HammingIndex, Matches, group_pairs, hamming_distance


def random_codes(rng: np.random.Generator, n: int, words: int, planted: int,
                 max_flips: int) -> np.ndarray:
    """Random codes with some planted near neighbours (and a few exact copies)."""
    codes = rng.integers(0, 2**64 - 1, (n, words), dtype=np.uint64, endpoint=True)
    if n > 1 and planted:
        src = rng.integers(0, n, planted)
        dst = rng.integers(0, n, planted)
        flips = np.zeros((planted, words), np.uint64)
        for k in range(planted):
            for bit in rng.choice(64 * words, int(rng.integers(0, max_flips + 1)), replace=False):
                flips[k, bit // 64] |= np.uint64(1) << np.uint64(bit % 64)
        codes[dst] = codes[src] ^ flips
    return codes


def assert_same(a: Matches, b: Matches) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 400), words=st.sampled_from([1, 1, 2]),
       radius=st.integers(0, 14), planted=st.integers(0, 60),
       n_substrings=st.sampled_from([None, None, 1, 2, 3, 5]))
def test_mih_equals_brute_force(seed, n, words, radius, planted, n_substrings):
    rng = np.random.default_rng(seed)
    codes = random_codes(rng, n, words, planted, radius + 2)
    if words == 1:
        codes = codes[:, 0]
    if n_substrings is not None:  # substrings hold at most 64 bits
        n_substrings = max(n_substrings, words)
    mih = HammingIndex(radius=radius, n_substrings=n_substrings).fit(codes)
    brute = HammingIndex(radius=radius, backend="brute").fit(codes)
    assert_same(mih.pairs(), brute.pairs())
    queries = random_codes(rng, 30, words, 0, 0)
    queries = queries[:, 0] if words == 1 else queries
    if n:
        queries = np.concatenate([queries, codes[: min(n, 20)]])  # exact and near hits too
    assert_same(mih.query(queries), brute.query(queries))
    # a different radius at query time uses the same tables
    assert_same(mih.query(queries, radius=radius // 2), brute.query(queries, radius=radius // 2))


def test_clustered_codes_match_brute_force():
    """Skewed data (codes of similar faces): many codes share substrings."""
    rng = np.random.default_rng(3)
    centres = rng.integers(0, 2**64 - 1, 5, dtype=np.uint64, endpoint=True)
    codes = centres[rng.integers(0, 5, 3000)]
    for _ in range(6):
        codes ^= np.uint64(1) << rng.integers(0, 64, 3000).astype(np.uint64)
    for radius in (2, 6, 9):
        assert_same(HammingIndex(radius=radius).fit(codes).pairs(),
                    HammingIndex(radius=radius, backend="brute").fit(codes).pairs())


def test_results_are_sorted_and_exclude_self():
    rng = np.random.default_rng(5)
    codes = random_codes(rng, 500, 1, 200, 3)[:, 0]
    index = HammingIndex(radius=4).fit(codes)
    found = index.pairs()
    assert np.all(found.query < found.index)
    order = np.lexsort((found.index, found.query))
    assert np.array_equal(order, np.arange(len(found)))
    assert np.array_equal(found.distance, hamming_distance(codes[found.query], codes[found.index]))
    hits = index.query(codes, exclude_self=True)
    assert not np.any(hits.query == hits.index)
    assert np.array_equal(np.lexsort((hits.index, hits.distance, hits.query)), np.arange(len(hits)))
    # every unordered pair twice, once from each side
    assert len(hits) == 2 * len(found)


def test_edge_cases():
    empty = np.zeros(0, np.uint64)
    index = HammingIndex(radius=3).fit(empty)
    assert len(index.pairs()) == 0 and len(index.query(np.array([5], np.uint64))) == 0
    one = HammingIndex(radius=3).fit(np.array([5], np.uint64))
    assert len(one.pairs()) == 0
    assert one.query(np.array([4], np.uint64)).distance.tolist() == [1]
    assert len(one.query(empty)) == 0
    same = HammingIndex(radius=0).fit(np.full(4, 9, np.uint64)).pairs()
    assert len(same) == 6 and set(same.distance.tolist()) == {0}
    far = np.array([0, 2**64 - 1], np.uint64)
    assert HammingIndex(radius=64).fit(far).pairs().distance.tolist() == [64]


def test_bad_arguments():
    codes = np.arange(4, dtype=np.uint64)
    # messages name the parameter, the value received and the bound it broke
    with pytest.raises(ValueError, match="radius == 65, must be <= 64"):
        HammingIndex(radius=65).fit(codes)
    with pytest.raises(ValueError, match="radius == -1, must be >= 0"):
        HammingIndex(radius=-1).fit(codes)
    with pytest.raises(ValueError, match="radius == 129, must be <= 128"):
        HammingIndex(radius=129).fit(np.zeros((2, 2), np.uint64))
    with pytest.raises(ValueError, match="radius == 70, must be <= 64"):
        HammingIndex().fit(codes).pairs(radius=70)
    with pytest.raises(TypeError, match="radius must be an instance of int, not float"):
        HammingIndex(radius=2.5).fit(codes)
    with pytest.raises(TypeError, match="radius must be an instance of int, not bool"):
        HammingIndex(radius=True).fit(codes)
    with pytest.raises(ValueError, match="backend must be one of"):
        HammingIndex(backend="bktree").fit(codes)
    with pytest.raises(ValueError, match="n_substrings == 0, must be >= 1"):
        HammingIndex(n_substrings=0).fit(codes)
    with pytest.raises(ValueError, match="n_substrings == 65, must be <= 64"):
        HammingIndex(n_substrings=65).fit(codes)
    with pytest.raises(ValueError, match="word"):
        HammingIndex().fit(codes).query(np.zeros((1, 2), np.uint64))
    with pytest.raises(TypeError, match="unsigned"):
        HammingIndex().fit(np.array([-1, 2]))


@pytest.mark.parametrize("search", [lambda index: index.pairs(),
                                    lambda index: index.query(np.arange(3, dtype=np.uint64))])
def test_unfitted_hamming_index_raises_not_fitted(search):
    with pytest.raises(NotFittedError, match="HammingIndex is not fitted yet; call fit"):
        search(HammingIndex())
    # NotFittedError is also a ValueError and an AttributeError, as in sklearn
    with pytest.raises(ValueError):
        search(HammingIndex())


@pytest.mark.parametrize("search", [lambda index: index.pairs(),
                                    lambda index: index.query(np.zeros((1, 48, 48), np.uint8))])
def test_unfitted_near_index_raises_not_fitted(search):
    with pytest.raises(NotFittedError, match="NearDuplicateIndex is not fitted yet; call fit"):
        search(NearDuplicateIndex())


def test_indexes_are_estimators():
    """Parameters are recorded unchanged and cloned; a clone is unfitted."""
    codes = np.arange(8, dtype=np.uint64)
    index = HammingIndex(radius=3, backend="brute", n_substrings=2).fit(codes)
    assert clone(index).get_params() == index.get_params()
    with pytest.raises(NotFittedError):
        clone(index).pairs()
    near = NearDuplicateIndex(radius=6, similarity=0.9, mirror=True, method="dhash")
    assert clone(near).get_params() == near.get_params()
    assert repr(near) == "NearDuplicateIndex(method='dhash', mirror=True, radius=6, similarity=0.9)"


def test_near_index_checks_its_thresholds():
    pixels = np.zeros((2, 48, 48), np.uint8)
    for params, error, message in (
            ({"radius": 65}, ValueError, "radius == 65, must be <= 64"),
            ({"radius": 1.5}, TypeError, "radius must be an instance of int"),
            ({"similarity": 2}, ValueError, r"similarity must be in \[-1.0, 1.0\]; got 2"),
            ({"similarity": float("nan")}, ValueError, "similarity must be in"),
            ({"similarity": "high"}, TypeError, "similarity must be a number")):
        with pytest.raises(error, match=message):
            NearDuplicateIndex(**params).fit(pixels)
    index = NearDuplicateIndex().fit(pixels)
    with pytest.raises(ValueError, match=r"min_similarity must be in \[-1.0, 1.0\]; got 1.5"):
        index.pairs(min_similarity=1.5)
    with pytest.raises(ValueError, match="min_similarity must be in"):
        index.query(pixels, min_similarity=-2)


def test_group_pairs_is_union_find():
    assert group_pairs(6, [4, 0, 1], [5, 1, 3]).tolist() == [0, 0, -1, 0, 1, 1]
    assert group_pairs(3, [], []).tolist() == [-1, -1, -1]
    assert group_pairs(0, [], []).tolist() == []
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 200, 150), rng.integers(0, 200, 150)
    groups = group_pairs(200, a, b)
    assert np.all(groups[a] == groups[b])
    # numbered by first member
    firsts = [np.flatnonzero(groups == g)[0] for g in range(groups.max() + 1)]
    assert firsts == sorted(firsts)
