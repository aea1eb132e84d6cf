"""Connecting to Dask: a local cluster sized for this machine, or a running scheduler.

Every Dask engine (the audit, cleaning at scale) gets its :class:`distributed.Client`
from :func:`connect`, so ``--dask local`` and ``--dask ADDRESS`` mean the same
everywhere, and an unreachable scheduler is one clear :class:`~ferclean.errors.FercleanError`.
"""

from __future__ import annotations

import re
from typing import Any

from ferclean.errors import FercleanError

__all__ = ["LOCAL", "connect", "local_cluster_size", "require_distributed"]

#: The ``connect`` spec that starts a local cluster.
LOCAL = "local"
# tcp://host:port, tls://..., inproc://..., ucx://..., or a bare host:port
_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?[^\s/:]+(?::\d+)?(?:/.*)?$", re.IGNORECASE)
_INSTALL = "pip install 'ferclean[dask]'"


def require_distributed(what: str = "the Dask engine") -> Any:
    """The ``distributed`` module, or a clear error naming the extra to install.

    Examples
    --------
    >>> require_distributed().__name__
    'distributed'
    """
    try:
        import distributed
    except ImportError:
        from ferclean.io.parquet import MissingDependencyError

        raise MissingDependencyError(
            f"{what} needs dask.distributed, which is not installed: {_INSTALL}") from None
    return distributed


def require_dask(what: str = "the Dask engine") -> tuple[Any, Any]:
    """``(dask, dask.dataframe)``, or a clear error naming the extra to install.

    Examples
    --------
    >>> dask, dd = require_dask()
    >>> dd.__name__
    'dask.dataframe'
    """
    try:
        import dask
        import dask.dataframe as dd
    except ImportError:
        from ferclean.io.parquet import MissingDependencyError

        raise MissingDependencyError(
            f"{what} needs dask, which is not installed: {_INSTALL}") from None
    return dask, dd


def local_cluster_size(n_cpus: int | None = None) -> dict[str, Any]:
    """The keyword arguments of the :class:`~distributed.LocalCluster` that ``connect``
    starts: one single-threaded worker process per CPU core (the engine's partition work
    is numpy that holds the GIL in places), memory shared out among them.

    Examples
    --------
    >>> local_cluster_size(4)["n_workers"], local_cluster_size(4)["threads_per_worker"]
    (4, 1)
    """
    if n_cpus is None:
        from dask.system import CPU_COUNT  # respects affinity and cgroup limits

        n_cpus = CPU_COUNT
    return {"n_workers": max(1, int(n_cpus)), "threads_per_worker": 1, "processes": True,
            "memory_limit": "auto", "dashboard_address": None}


def connect(spec: str = LOCAL, *, timeout: float | str | None = None) -> Any:
    """A :class:`distributed.Client` for ``spec``: ``"local"`` or a scheduler's address.

    Parameters
    ----------
    spec : str, default="local"
        ``"local"`` starts a :class:`~distributed.LocalCluster` sized for this machine
        (:func:`local_cluster_size`); closing the client shuts it down. Anything else is
        the address of a running scheduler, e.g. ``tcp://10.0.0.5:8786`` (from
        ``dask scheduler``, dask-jobqueue or a Kubernetes ``DaskCluster``).
    timeout : float or str, default=None
        How long to try reaching a scheduler (seconds, or a Dask duration such as
        ``"10s"``); ``None``: Dask's ``distributed.comm.timeouts.connect`` (30 s unless
        configured, e.g. with ``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT=5s``).

    Returns
    -------
    distributed.Client
        Set as the default client; close it when done (``with connect(...) as client:``).

    Raises
    ------
    FercleanError
        ``cannot reach the Dask scheduler at ADDRESS: ...`` when no scheduler answers
        in time, or the address is not one.
    MissingDependencyError
        Without the ``dask`` extra.

    Examples
    --------
    >>> connect("tcp://127.0.0.1:1", timeout=0.2)
    Traceback (most recent call last):
    ...
    ferclean.errors.FercleanError: cannot reach the Dask scheduler at tcp://127.0.0.1:1: ...
    """
    distributed = require_distributed()
    if not isinstance(spec, str) or not spec.strip():
        raise FercleanError(f"--dask needs 'local' or a scheduler address such as "
                            f"tcp://host:8786; got {spec!r}")
    spec = spec.strip()
    if spec.lower() == LOCAL:
        return distributed.Client(**local_cluster_size())
    if not _ADDRESS.match(spec):
        raise FercleanError(f"cannot reach the Dask scheduler at {spec}: not an address "
                            f"(expected 'local' or e.g. tcp://host:8786)")
    kwargs = {} if timeout is None else {"timeout": timeout}
    try:
        return distributed.Client(spec, **kwargs)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise FercleanError(f"cannot reach the Dask scheduler at {spec}: {reason}") from None
