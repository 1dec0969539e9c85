"""A config written before a key was renamed is refused with one line that names the new key, before
anything is planned (rules/common/checks.smk)."""

from __future__ import annotations

from tests.support.workflow import demo_config, snakemake, write_config


def test_resources_evaluate_is_named_generate_now(tmp_path):
    config = demo_config()
    config["resources"]["evaluate"] = config["resources"].pop("generate")
    result = snakemake("-n", "--configfile", write_config(tmp_path, config), workdir=tmp_path, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    problems = [line for line in output.splitlines() if line.startswith("  - ")]
    assert problems == [
        "  - resources.evaluate is resources.generate now (it sizes the generate jobs); fix: rename the key"
    ], output[-2000:]
    assert "nothing was run" in output and not (tmp_path / "results").exists()
