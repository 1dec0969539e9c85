"""A stub `scontrol` first on PATH where slurm-wlm is installed but no SLURM controller runs.

The SLURM executor plugin (2.x) asks `scontrol show config` when it is imported (its settings' help
text), and every snakemake process imports it; without a controller scontrol waits 9 s before it
fails. The tests and benchmarks/dag_overhead.py install this stub for their own processes only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def install() -> None:
    """Where slurm-wlm is installed but no controller runs (this machine and CI, outside the SLURM
    tests), `scontrol show config` waits 9 s before it fails, and the SLURM executor plugin asks it at
    import (its settings' help text): 9 s in every snakemake process of the suite. A stub first on PATH
    runs the real scontrol while a slurmctld runs (tests/integration/test_cluster.py starts one) and
    fails at once otherwise, as scontrol does after its wait."""
    real = shutil.which("scontrol")
    if real is None:
        return
    folder = Path(tempfile.mkdtemp(prefix="scontrol-stub-"))
    stub = folder / "scontrol"
    stub.write_text(
        "#!/bin/sh\n"
        f'if ! command -v pgrep >/dev/null || pgrep -x slurmctld >/dev/null; then exec {real} "$@"; fi\n'
        'echo "scontrol (stub of tests/support/scontrol_stub.py): no slurmctld runs on this machine" >&2\n'
        "exit 1\n"
    )
    stub.chmod(0o755)
    os.environ["PATH"] = os.pathsep.join([str(folder), os.environ.get("PATH", "")])
