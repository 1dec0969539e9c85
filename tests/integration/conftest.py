"""Fixtures of the integration tests: the tiny models (built offline) and one real run of the demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.workflow import REPO, SENTINEL_TOKEN, snakemake


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from workflow_scripts.demo import tiny_model

    return tiny_model.build(tmp_path_factory.mktemp("model") / "tiny-qwen2")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    from workflow_scripts.demo import tiny_model

    return tiny_model.build(tmp_path_factory.mktemp("model") / "tiny-llama3", style="llama3")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """One full run of config/demo.yaml in a fresh working directory (real training and lm-eval)."""
    workdir = tmp_path_factory.mktemp("demo")
    result = snakemake(
        "--configfile",
        str(REPO / "config/demo.yaml"),
        "--cores",
        "2",
        workdir=workdir,
        env_extra={"HF_TOKEN": SENTINEL_TOKEN},
    )
    (workdir / "run-output.txt").write_text(result.stdout + result.stderr)
    return workdir
