"""The ablation suite: cleaning variations x resampling x models x protocols, and its statistics.

Modules, each with one job: ``profiles`` (cells, recipes and profiles), ``data`` (what
one run trains and is evaluated on, by protocol, and the one pair of evaluation sets of a
run), ``suite`` (running, resuming, sharding), ``results`` (the results files and per-run
predictions), ``stats`` (summaries, paired differences, Holm's correction, bootstrap
intervals, collapse flags), ``tables`` (the Markdown table), ``plots`` (the figures) and
``rederive`` (today's statistics for stored runs). The JAX side is imported only when a
run trains.
"""

from ferclean.bench.data import (
    Prepared,
    deleaked,
    evaluation_checksum,
    evaluation_sets,
    prepare,
)
from ferclean.bench.plots import plot_results
from ferclean.bench.profiles import PROFILES, VARIATIONS, Cell, Profile
from ferclean.bench.rederive import rederive
from ferclean.bench.stats import run_collapse, summarize_runs
from ferclean.bench.suite import run_suite, run_suite_parallel
from ferclean.bench.tables import write_table

__all__ = [
    "PROFILES",
    "VARIATIONS",
    "Cell",
    "Prepared",
    "Profile",
    "deleaked",
    "evaluation_checksum",
    "evaluation_sets",
    "plot_results",
    "prepare",
    "rederive",
    "run_collapse",
    "run_suite",
    "run_suite_parallel",
    "summarize_runs",
    "write_table",
]
