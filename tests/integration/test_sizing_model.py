"""A model's parameter count: its config.json on disk (the tiny model) before the declared count."""

from __future__ import annotations

import pytest

from workflow_scripts.lib import sizing


def test_config_json_on_disk_wins_over_the_declared_count(tiny_model, tmp_path):
    counted = sizing.model_parameters(str(tiny_model), 10**9, "tiny")
    from transformers import AutoModelForCausalLM

    assert counted == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters())
    assert sizing.model_parameters(str(tmp_path / "not-fetched"), 1_235_814_400, "llama") == 1_235_814_400
    with pytest.raises(ValueError, match=r"models\.llama: .* fix: set models\.llama\.parameters"):
        sizing.model_parameters(str(tmp_path / "not-fetched"), None, "llama")
