"""The documentation the code relies on: the options reference is the declarations' own and names every flag of
every command, the README stays a way in (short, narrow lines, its example method runs), and every Markdown file
the code or the docs name exists in the repository."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from bench.cli import build_parser, options_table

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = ROOT / "docs" / "options.md"


def test_the_options_reference_holds_the_table_generated_from_the_declarations():
    assert options_table() in OPTIONS.read_text(), (
        "docs/options.md's `bench run` options table differs from the declarations; regenerate it with\n"
        "  python -c \"from bench.cli import options_table; print(options_table())\"\n" + options_table())


def test_every_flag_of_every_command_is_named_in_the_options_reference():
    text = OPTIONS.read_text()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = {(command, flag) for command, parser in sub.choices.items() for action in parser._actions
             for flag in action.option_strings if flag.startswith("--") and flag != "--help"}
    assert ("run", "--prune-steps") in flags and ("report", "--latency") in flags
    missing = sorted(f"bench {command} {flag}" for command, flag in flags if f"`{flag}" not in text)
    assert not missing, f"named nowhere in docs/options.md: {missing}"


def test_the_readme_is_at_most_300_lines_none_over_120_characters():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300
    assert [i + 1 for i, line in enumerate(lines) if len(line) > 120] == []


def test_the_readmes_example_method_registers_and_computes_its_penalty(tmp_path):
    """The README's plugin file, as written, on two convs of hand-set weights: the filters' l1 norms sum to 9."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(# my_methods\.py.*?)```", readme, re.S)
    assert block, "the README's example method (a python block starting '# my_methods.py') is gone"
    (tmp_path / "my_methods.py").write_text(block.group(1))
    check = """
import torch
from torch import nn
import my_methods
from methods import get_method
model = nn.Sequential(nn.Conv2d(1, 2, (1, 2)), nn.Conv2d(2, 3, 1))
with torch.no_grad():
    model[0].weight.copy_(torch.tensor([[[[1.0, -2.0]]], [[[0.5, 0.5]]]]))               # l1 norms 3 and 1
    model[1].weight.copy_(torch.tensor([[3.0, 0.0], [-1.0, 1.0], [0.0, 0.0]]).view(3, 2, 1, 1))  # 3, 2, 0
method = get_method("filter-l1")(lam=0.5)
print(method.name, method.penalty_weight, float(method.penalty(model)))
"""
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["filter-l1", "0.5", "9.0"]


def test_every_markdown_file_named_by_the_code_or_the_docs_exists():
    sources = [*ROOT.glob("bench/**/*.py"), *ROOT.glob("methods/*.py"), *ROOT.glob("benchmarks/*.py"),
               ROOT / "README.md", *ROOT.glob("docs/*.md")]
    named = {(src, m) for src in sources for m in re.findall(r"[\w./-]+\.md\b", src.read_text())}
    assert any(m == "docs/methods.md" for _, m in named)
    known = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    missing = sorted(f"{src.relative_to(ROOT)} names {m}" for src, m in named
                     if not ((ROOT / m).is_file() or (src.parent / m).is_file() or Path(m).name in known))
    assert not missing, missing


def test_every_docs_page_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert [p for p in pages if f"](docs/{p})" not in readme] == []
