"""Comments cite the domain rules the repository holds (docs/domain.md, "domain §n"), not
a document outside it: every "domain §n" names a section that docs/domain.md has."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [
    p
    for top in ("src", "tests", "bench", "tools")
    for p in (ROOT / top).rglob("*")
    if p.suffix in {".py", ".html", ".txt"} and p.is_file() and p.name != Path(__file__).name
]


def test_no_comment_cites_the_spec_outside_the_repository():
    citing = [str(p.relative_to(ROOT)) for p in SOURCES if "SPEC §" in p.read_text("utf-8")]
    assert citing == []


def test_every_domain_section_cited_exists():
    headings = (ROOT / "docs" / "domain.md").read_text("utf-8")
    sections = set(re.findall(r"^#+ (\d+(?:\.\d+)*)\.? ", headings, flags=re.M))
    cited = {
        number.rstrip(".")
        for p in SOURCES
        for number in re.findall(r"domain §(\d+(?:\.\d+)*)", p.read_text("utf-8"))
    }
    assert cited, "no citation found: the pattern is wrong"
    assert cited - sections == set()
