"""The test folders by kind, and the fixtures every kind may use.

- tests/unit/: functions, task files and dry-runs of the workflow (no model is built or trained, no
  workflow runs): marked `fast`, what `make test-fast` runs (minutes).
- tests/integration/: the real parts: training, lm-eval, the workflow, SLURM, conda environments, vLLM's
  CPU build: marked `slow`. Its fixtures (the tiny models, one demo run) live in its own conftest.py, so
  a unit test cannot use them.
- tests/support/: helpers both kinds import (tests.support.workflow), the golden sets' code, and what
  serves one cell or a synthetic grid outside the workflow.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import scontrol_stub  # noqa: E402  (after the path)

# slurm-wlm without a controller: see tests/support/scontrol_stub.py.
scontrol_stub.install()

# The marker each folder sets: `make test-fast` selects `fast`.
FOLDER_MARKERS = {"unit": "fast", "integration": "slow"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(item.path).relative_to(REPO / "tests").parts[0]
        if folder not in FOLDER_MARKERS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in tests/unit/ or tests/integration/")
        item.add_marker(getattr(pytest.mark, FOLDER_MARKERS[folder]))


@pytest.fixture(scope="session")
def arc_bins(tmp_path_factory) -> Path:
    """The synthetic arc sample, normalized and split into 3 bins, as the workflow does it."""
    from workflow_scripts.demo import sample_data
    from workflow_scripts.steps import binning, data

    folder = tmp_path_factory.mktemp("arc")
    sample_data.arc_rows(60).to_json(folder / "arc.jsonl", orient="records", lines=True)
    table = data.normalize(data.load_source({"path": str(folder / "arc.jsonl")}))
    for k, part in enumerate(binning.split_into_bins(table, 3, "1pl_quantile")):
        part.to_parquet(folder / f"bin-{k}.parquet")
    return folder
