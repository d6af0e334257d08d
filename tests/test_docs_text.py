"""The pages under docs/ are finished text: no placeholder a generator or an author left for
figures still to be measured (docs/basicsr.md once ended its Measured section with one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "docs").glob("*.md"))
#: words that mark unfinished text; an ALL_CAPS name ending in _FIGURES / _HERE / _TBD is one too
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX|[A-Z]+_(?:FIGURES|NUMBERS|HERE|TBD))\b")


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_no_placeholder_left_in(page):
    found = [f"{page.name}:{n}: {m.group(0)}" for n, line in enumerate(page.read_text().splitlines(), 1)
             for m in PLACEHOLDER.finditer(line)]
    assert found == []


def test_the_pattern_finds_the_placeholder_it_is_for():
    assert PLACEHOLDER.search("environment). MEASURED_FIGURES") and not PLACEHOLDER.search("SR_BENCH_DATA_URL")
