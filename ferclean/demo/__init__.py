"""Built-in demo data: procedurally drawn faces with planted problems and their exact truth.

The modules, one job each: :mod:`~ferclean.demo.faces` draws the faces,
:mod:`~ferclean.demo.edits` makes near copies, :mod:`~ferclean.demo.nonfaces` draws
non-face images, :mod:`~ferclean.demo.truth` holds the ground truth (:class:`DemoTruth`)
and :mod:`~ferclean.demo.make` assembles the demo (:func:`make_demo`, cached per seed).
Import the names from ``ferclean.demo``.

Examples
--------
>>> from ferclean.demo import make_demo
>>> demo = make_demo(n_faces=300)
>>> len(demo.dataset) > 300 and len(demo.truth.exact_groups()) >= 12
True
"""

from ferclean.demo.edits import NEAR_EDITS
from ferclean.demo.make import Demo, demo_dataset, make_demo
from ferclean.demo.nonfaces import NON_FACE_KINDS
from ferclean.demo.truth import DemoTruth

__all__ = ["NEAR_EDITS", "NON_FACE_KINDS", "Demo", "DemoTruth", "demo_dataset", "make_demo"]
