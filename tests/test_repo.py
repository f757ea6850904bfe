"""Repository invariants: CI runs exactly the README's test command."""

from __future__ import annotations

import re


def _test_command(text: str) -> str:
    commands = [line.strip() for line in text.splitlines()
                if "pytest" in line and "pip install" in line]
    assert len(commands) == 1, commands
    return commands[0]


def test_ci_runs_the_readme_test_command(repo):
    readme = _test_command((repo / "README.md").read_text())
    ci = _test_command((repo / ".ci/run").read_text())
    assert readme == ci


def test_readme_has_quick_start(repo):
    text = (repo / "README.md").read_text()
    assert re.search(r"^## Quick start", text, re.MULTILINE)
