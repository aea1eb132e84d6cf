"""FER-2013's own splits, the honest way: train on Training, tune on PublicTest, test once."""

from __future__ import annotations

from ferclean._validation import check_dataset
from ferclean.dataset import FaceDataset
from ferclean.errors import LeakageError

__all__ = ["honest_splits"]


def honest_splits(dataset: FaceDataset) -> tuple[FaceDataset, FaceDataset, FaceDataset]:
    """FER-2013's own splits: (Training, PublicTest, PrivateTest).

    Train on Training, pick epochs and learning rates on PublicTest, and report
    PrivateTest once. Resampling and class weights belong to Training only; a test split
    holding synthetic (e.g. SMOTE) images is refused.

    Raises
    ------
    LeakageError
        If PublicTest or PrivateTest holds synthetic images.
    ValueError
        If the Training split is empty.

    Examples
    --------
    >>> from ferclean.demo import demo_dataset
    >>> train_ds, val_ds, test_ds = honest_splits(demo_dataset(n_faces=300))
    >>> len(train_ds) > len(val_ds) > 0 and len(test_ds) > 0
    True
    """
    dataset = check_dataset(dataset)
    parts = tuple(dataset.split(name) for name in ("Training", "PublicTest", "PrivateTest"))
    if len(parts[0]) == 0:
        raise ValueError("the dataset has no Training images to train on")
    for part, name in zip(parts[1:], ("PublicTest", "PrivateTest"), strict=True):
        if part.synthetic.any():
            raise LeakageError(
                f"{name} holds {int(part.synthetic.sum())} synthetic image(s); resample the "
                f"Training split only and keep the test splits untouched"
            )
    return parts  # type: ignore[return-value]
