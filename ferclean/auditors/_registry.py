"""The registry of auditor classes by issue name, in a module that imports nothing.

:func:`ferclean.auditors.register` fills it; the context reads it to build dependencies.
"""

from __future__ import annotations

from typing import Any

#: Auditor classes by issue name, in the order ``ferclean audit`` runs and reports them.
REGISTRY: dict[str, Any] = {}
