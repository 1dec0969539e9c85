"""A command with the network really cut: a network namespace of its own (`unshare --net`, root) and an
empty HOME; the test is skipped where no namespace can be made."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def offline_unavailable() -> str | None:
    if not shutil.which("unshare"):
        return "no unshare(1)"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot make a network namespace here: {probe.stderr.strip()}"


def offline(command: list[str], home: Path, **env) -> subprocess.CompletedProcess:
    """`command` with the network cut (its own network namespace) and an empty HOME."""
    reason = offline_unavailable()
    if reason:
        pytest.skip(f"the network cannot be cut here: {reason}")
    environment = {k: v for k, v in os.environ.items() if k != "NLTK_DATA"}
    environment.update(HOME=str(home), **env)
    return subprocess.run(["unshare", "--net", *command], capture_output=True, text=True, env=environment, timeout=900)
