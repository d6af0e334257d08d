"""CITATION.cff: valid Citation File Format 1.2.0 that agrees with the package and the paper."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sr_bench

yaml = pytest.importorskip("yaml")  # in the test extra; CITATION.cff is YAML
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cff() -> dict:
    return yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))


def test_required_fields_and_the_package_metadata(cff):
    assert cff["cff-version"] == "1.2.0"
    assert cff["message"] and cff["title"].startswith("sr_bench")
    assert cff["authors"] and all("name" in a or "family-names" in a for a in cff["authors"])
    assert cff["version"] == sr_bench.__version__  # a release bumps both
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert cff["license"] == project["license"] == "MIT"


def test_the_edsr_paper_is_referenced_with_its_proceedings_details(cff):
    (paper,) = [r for r in cff["references"] if "Enhanced Deep Residual" in r["title"]]
    assert paper["type"] == "conference-paper"
    assert paper["title"] == "Enhanced Deep Residual Networks for Single Image Super-Resolution"
    assert [(a["family-names"], a["given-names"]) for a in paper["authors"]] == [
        ("Lim", "Bee"), ("Son", "Sanghyun"), ("Kim", "Heewon"), ("Nah", "Seungjun"), ("Lee", "Kyoung Mu")]
    assert (paper["year"], paper["month"], paper["start"], paper["end"]) == (2017, 7, 136, 144)
    assert paper["doi"] == "10.1109/CVPRW.2017.151"
    assert re.fullmatch(r"10\.\d{4,9}/\S+", paper["doi"])  # the schema's DOI pattern
    assert "CVPR" in paper["collection-title"] and "Workshops" in paper["collection-title"]


def test_validates_against_the_cff_schema_when_cffconvert_is_installed():
    """The full JSON-schema check (cffconvert is not a test dependency: it pins jsonschema < 4)."""
    pytest.importorskip("cffconvert")
    from cffconvert.cli.create_citation import create_citation

    create_citation(str(REPO / "CITATION.cff"), None).validate()  # raises on any schema violation
