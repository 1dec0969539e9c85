"""Formatting is the formatters': ruff format (Python) and snakefmt (Snakefile, rules/) leave every file as it is.
Settings in pyproject.toml; `make format` applies them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.workflow import REPO

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [["ruff", "format", "--check", "."], ["snakefmt", "--check", "Snakefile", "rules/"]],
    ids=["ruff", "snakefmt"],
)
def test_the_formatter_changes_nothing(command):
    result = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"run `make format`:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
