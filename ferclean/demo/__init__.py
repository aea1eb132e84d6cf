"""Built-in demo data: procedurally drawn faces with planted problems and their exact truth."""

from ferclean.demo._demo import NEAR_EDITS, NON_FACE_KINDS, Demo, DemoTruth, demo_dataset, make_demo

__all__ = ["NEAR_EDITS", "NON_FACE_KINDS", "Demo", "DemoTruth", "demo_dataset", "make_demo"]
