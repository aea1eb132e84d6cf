"""Every accuracy quoted in the benchmark docs comes from a committed results table (or
the committed re-derivation of one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the tables the suite wrote, and the re-derivations of their runs with today's statistics
TABLES = sorted([*(ROOT / "benchmarks" / "results").glob("*/table.md"),
                 *(ROOT / "benchmarks" / "results").glob("*/rederived.md")])
PAGES = [ROOT / "docs" / "benchmarks.md", ROOT / "README.md"]
MEAN_SD = re.compile(r"\d+\.\d ± \d+\.\d")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_quoted_accuracies_are_in_a_results_table(page):
    tables = "\n".join(t.read_text() for t in TABLES)
    quoted = MEAN_SD.findall(page.read_text())
    missing = [q for q in quoted if q not in tables]
    assert not missing, f"{page.name} quotes figures no results table holds: {missing}"


def test_the_full_profile_page_quotes_some_figures():
    assert TABLES, "no results tables committed"
    assert len(MEAN_SD.findall(PAGES[0].read_text())) >= 10
