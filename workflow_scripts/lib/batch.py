"""The effective batch of a training job: the config states it, the accumulation steps follow from the ranks.

The study trained with 4 ranks x 2 sequences = 8 per optimizer step (4 x 1 = 4 with gradient
checkpointing). Its scripts wrote the per-device batch and the accumulation steps, so the effective
batch was whatever the rank count made of them: 8 GPUs would have doubled it. Here the config says the
effective batch (`training.effective_batch_size`, the study's 8 and 4 as defaults) and each job derives
`gradient_accumulation_steps = effective / (per_device_batch_size x ranks)`, so the schedule (optimizer
steps, warm-up, learning-rate curve) is the study's whatever the GPU count. A combination that cannot
reach the effective batch exactly is refused when the workflow is parsed (rules/common/checks.smk).

Used by the rules (rules/common/settings.smk), the config checks and the tests; no torch here.
"""

from __future__ import annotations


def accumulation_steps(effective: int, per_device: int, ranks: int) -> int:
    """Micro-batches per optimizer step on each rank; ValueError when `effective` is not a multiple of
    per_device x ranks (the message says which values to change)."""
    per_step = per_device * ranks
    if effective % per_step:
        raise ValueError(
            f"effective_batch_size {effective} is not a multiple of per_device_batch_size {per_device} x {ranks} "
            f"rank(s) = {per_step}"
        )
    return effective // per_step


def job_settings(merged: dict, ranks: int) -> dict:
    """The settings one training job gets: the merged config values with `effective_batch_size` turned
    into `gradient_accumulation_steps` for this many ranks (workflow_scripts/steps/training.py TrainSettings).

    The job sees the accumulation steps, not the effective batch: with the study's 4 ranks the settings
    are the same as before the effective batch became a setting, so finished jobs stay current."""
    settings = dict(merged)
    effective = settings.pop("effective_batch_size")
    settings["gradient_accumulation_steps"] = accumulation_steps(effective, settings["per_device_batch_size"], ranks)
    return settings
