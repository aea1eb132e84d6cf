"""The ablation suite: cleaning variations x resampling x models x protocols, and its statistics."""

from ferclean.bench._suite import (
    PROFILES,
    VARIATIONS,
    Cell,
    Profile,
    deleaked,
    plot_results,
    prepare,
    run_suite,
    run_suite_parallel,
    summarize_runs,
    write_table,
)

__all__ = [
    "PROFILES",
    "VARIATIONS",
    "Cell",
    "Profile",
    "deleaked",
    "plot_results",
    "prepare",
    "run_suite",
    "run_suite_parallel",
    "summarize_runs",
    "write_table",
]
