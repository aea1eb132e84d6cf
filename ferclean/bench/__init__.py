"""The ablation suite: cleaning variations x resampling x models x protocols, and its statistics.

Modules, each with one job: ``profiles`` (cells and profiles), ``data`` (what one run
trains and is evaluated on, by protocol), ``suite`` (running, resuming, sharding),
``results`` (the results files), ``stats`` (summaries and paired differences), ``tables``
(the Markdown table) and ``plots`` (the figures). The JAX side is imported only when a
run trains.
"""

from ferclean.bench.data import Prepared, deleaked, prepare
from ferclean.bench.plots import plot_results
from ferclean.bench.profiles import PROFILES, VARIATIONS, Cell, Profile
from ferclean.bench.stats import summarize_runs
from ferclean.bench.suite import run_suite, run_suite_parallel
from ferclean.bench.tables import write_table

__all__ = [
    "PROFILES",
    "VARIATIONS",
    "Cell",
    "Prepared",
    "Profile",
    "deleaked",
    "plot_results",
    "prepare",
    "run_suite",
    "run_suite_parallel",
    "summarize_runs",
    "write_table",
]
