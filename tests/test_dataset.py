"""Tests of ferclean.dataset: FaceDataset's checks on what it is given and on subsets."""

from __future__ import annotations

import numpy as np
import pytest

from ferclean.dataset import FaceDataset, as_pixels, label_code


def three() -> FaceDataset:
    pixels = np.arange(3 * 48 * 48).reshape(3, 48, 48) % 256
    return FaceDataset(pixels.astype(np.uint8), labels=[0, 3, 6], ids=["a", "b", "c"])


# ---------------------------------------------------------------------- subsets


@pytest.mark.parametrize("index", [[2, 3], [5], [0, 5], [3], [-4], [0, -4], [1, 2, 3]])
def test_every_out_of_range_index_raises(index: list[int]) -> None:
    # [2, 3] used to give 1 image and [5] an empty dataset: contiguous runs became slices.
    with pytest.raises(IndexError, match="out of range for a FaceDataset of 3 images"):
        three().subset(index)
    with pytest.raises(IndexError):
        three()[np.asarray(index)]


def test_out_of_range_unsigned_index_does_not_wrap() -> None:
    with pytest.raises(IndexError):
        three().subset(np.array([2**64 - 1], dtype=np.uint64))


def test_negative_indices_count_from_the_end() -> None:
    ds = three()
    assert ds.subset([-1]).ids.tolist() == ["c"]
    assert ds.subset([-3, -2]).ids.tolist() == ["a", "b"]
    assert ds.subset([-2, -1]).pixels.base is ds.pixels  # still a view


def test_valid_selections_are_unchanged() -> None:
    ds = three()
    assert ds.subset([1, 2]).ids.tolist() == ["b", "c"]
    assert ds.subset([2, 0]).ids.tolist() == ["c", "a"]
    assert ds.subset([1, 1]).ids.tolist() == ["b", "b"]
    assert ds.subset(slice(1, 10)).ids.tolist() == ["b", "c"]  # slices clip, as for lists
    assert ds.subset(np.array([True, False, True])).ids.tolist() == ["a", "c"]
    assert len(ds.subset([])) == 0 and len(ds[[]]) == 0  # [] is float64 to numpy


@pytest.mark.parametrize(
    ("index", "error", "match"),
    [
        (1, TypeError, "scalar"),
        (np.int64(1), TypeError, "scalar"),
        ([0.0, 1.0], TypeError, "float64"),
        ([[0, 1]], ValueError, "1-D"),
        (np.array([True, False]), ValueError, "mask must have shape"),
    ],
)
def test_bad_index_types(index: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        three().subset(index)


def test_empty_dataset_subsets() -> None:
    empty = three()[[]]
    assert len(empty[[]]) == 0
    with pytest.raises(IndexError, match="it is empty"):
        empty.subset([0])


# ---------------------------------------------------------------------- pixels


@pytest.mark.parametrize(
    ("pixels", "error", "match"),
    [
        (np.full((1, 48, 48), np.nan), ValueError, "image 0 holds nan"),
        (np.full((1, 48, 48), np.inf), ValueError, "image 0 holds inf"),
        (np.full((2, 48, 48), 0.5), ValueError, r"image 0 holds 0.5 \(the values lie in \[0, 1\]"),
        (np.full((1, 48, 48), 7.6), ValueError, r"holds 7.6 \(round them first\)"),
        (np.ones((1, 48, 48), bool), TypeError, "bool"),
        (np.ones((1, 48, 48), complex), TypeError, "complex"),
        (np.full((1, 48, 48), "1"), TypeError, "str|<U1"),
        (np.full((1, 48, 48), 256), ValueError, "0..255"),
        (np.full((1, 48, 48), -1.0), ValueError, "0..255"),
    ],
)
def test_pixels_are_never_coerced_silently(pixels: np.ndarray, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        as_pixels(pixels)
    with pytest.raises(error, match=match):
        FaceDataset(pixels)


def test_nan_names_the_image() -> None:
    pixels = np.zeros((3, 48, 48))
    pixels[2, 5, 5] = np.nan
    with pytest.raises(ValueError, match="image 2 holds nan"):
        FaceDataset(pixels)


def test_whole_float_pixels_are_accepted() -> None:
    pixels = np.arange(48 * 48, dtype=np.float64).reshape(1, 48, 48) % 256
    ds = FaceDataset(pixels)
    assert ds.pixels.dtype == np.uint8 and np.array_equal(ds.pixels, pixels)
    # 0.0 and 1.0 only: whole numbers, taken at face value
    assert FaceDataset(np.ones((1, 48, 48))).pixels.max() == 1


# ---------------------------------------------------------------------- labels and splits


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        ([0, np.nan, 1], ValueError, r"labels must be whole numbers; got nan at position 1"),
        ([0, 2.5, 1], ValueError, r"got 2.5 at position 1"),
        ([True, False, True], TypeError, "labels must be integers; got a bool array"),
        (np.array([1, 2, 3], complex), TypeError, "complex"),
        ([0, 7, 1], ValueError, "label 7 at position 1 is not in -1..6"),
        (np.array(["happy", True, "sad"], dtype=object), ValueError, "unknown label True"),
    ],
)
def test_labels_are_never_coerced_silently(labels: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        FaceDataset(np.zeros((3, 48, 48), np.uint8), labels=labels)


def test_whole_float_labels_and_names_are_accepted() -> None:
    ds = FaceDataset(np.zeros((3, 48, 48), np.uint8), labels=[0.0, -1.0, 6.0])
    assert ds.labels.tolist() == [0, -1, 6]
    ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), labels=np.array(["Happy", 6], object))
    assert ds.labels.tolist() == [3, 6]


def test_label_code_rejects_bool() -> None:
    with pytest.raises(ValueError, match="unknown label True"):
        label_code(True)


@pytest.mark.parametrize(
    ("splits", "error", "match"),
    [
        ([0, 1.5], ValueError, "split codes must be whole numbers; got 1.5 at position 1"),
        ([0, np.nan], ValueError, "got nan"),
        ([True, False], TypeError, "bool"),
        ([0, 3], ValueError, "split codes must lie in 0..2; got 3 at position 1"),
    ],
)
def test_split_codes_are_checked(splits: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        FaceDataset(np.zeros((2, 48, 48), np.uint8), splits=splits)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rows": [0, 1.5]}, ValueError, "rows must be whole numbers"),
        ({"rows": [0, np.nan]}, ValueError, "rows must be whole numbers"),
        ({"rows": [0, 1e300]}, ValueError, "rows must be whole numbers"),
        ({"synthetic": [0.0, 0.5]}, TypeError, "synthetic must be True/False"),
        ({"synthetic": [0, 2]}, TypeError, "synthetic must be True/False"),
    ],
)
def test_rows_and_flags_are_checked(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        FaceDataset(np.zeros((2, 48, 48), np.uint8), **kwargs)


def test_rows_and_flags_accept_their_usual_forms() -> None:
    ds = FaceDataset(np.zeros((2, 48, 48), np.uint8), rows=[4.0, 9], synthetic=[0, 1])
    assert ds.rows.tolist() == [4, 9] and ds.rows.dtype == np.int64
    assert ds.synthetic.tolist() == [False, True]
