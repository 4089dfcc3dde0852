"""The documentation's relative links point at files of the repository, and no docstring points at a
design file the repository does not have."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_in_the_markdown_files_resolve():
    documents = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for document in documents:
        for target in LINK.findall(document.read_text(encoding="utf-8")):
            if "://" not in target and not (document.parent / target).exists():
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_docstrings_point_at_the_architecture_document():
    assert (ROOT / "docs" / "architecture.md").exists()
    mentions = [p for p in (ROOT / "DIRVNetLib").rglob("*.py") if "DESIGN.md" in p.read_text(encoding="utf-8")]
    assert not mentions, mentions
