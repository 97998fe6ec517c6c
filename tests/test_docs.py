"""The documentation the code relies on: the README's option table is the declarations' own, and every
Markdown file the code or the docs name exists in the repository."""
from __future__ import annotations

import re
from pathlib import Path

from bench.cli import options_table

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_option_table_is_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    assert options_table() in readme, (
        "README.md's `bench run` options table differs from the declarations; regenerate it with\n"
        "  python -c \"from bench.cli import options_table; print(options_table())\"\n" + options_table())


def test_every_markdown_file_named_by_the_code_or_the_docs_exists():
    sources = [*ROOT.glob("bench/**/*.py"), *ROOT.glob("methods/*.py"), *ROOT.glob("benchmarks/*.py"),
               ROOT / "README.md", *ROOT.glob("docs/*.md")]
    named = {(src, m) for src in sources for m in re.findall(r"[\w./-]+\.md\b", src.read_text())}
    assert any(m == "docs/methods.md" for _, m in named)
    known = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    missing = sorted(f"{src.relative_to(ROOT)} names {m}" for src, m in named
                     if not ((ROOT / m).is_file() or (src.parent / m).is_file() or Path(m).name in known))
    assert not missing, missing
