"""When SLURM will end this job: the deadline a train job checkpoints before (workflow_scripts/steps/training.py).

A train job killed at its time limit with no checkpoint starts again from step 0 on its retry, and the
interval checkpoints (launch.checkpoint_minutes, 30) are longer than most first attempts' limits. So
the job learns when it will be killed and writes one checkpoint in time: the retry then resumes from it.

Under SLURM the job asks `squeue` for its own time left (the job id is in the environment of the job
step; the plugin keeps SLURM_JOB_ID), which counts from the job's real start, before Snakemake parsed
the workflow in the job. Where squeue cannot answer, the job's time limit (the rule's
`resources.runtime` of this attempt) is counted from the launcher's start, less what a job spends before
the launcher runs. Outside SLURM there is no deadline: a local run has no time limit.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

# What a job spends before the training launcher starts (job step, conda activation, Snakemake reading
# the workflow): taken off the time limit when squeue cannot say how much is left.
STARTUP_ALLOWANCE_S = 120


def parse_time_left(text: str) -> float | None:
    """squeue's %L ([days-]hours:minutes:seconds, minutes:seconds) in seconds; None for UNLIMITED,
    NOT_SET, INVALID or anything else that is no duration."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(part) if part else 0 for part in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def squeue_time_left(job_id: str) -> float | None:
    try:
        answer = subprocess.run(
            ["squeue", "-h", "-j", job_id, "-o", "%L"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_time_left(answer.stdout.splitlines()[0]) if answer.stdout.strip() else None


def deadline(time_limit_minutes: float, started: float, environ=os.environ, time_left=squeue_time_left) -> tuple:
    """(epoch seconds when the job will be killed, how that was found), or (None, why there is none)."""
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        return None, "no SLURM job: no time limit"
    left = time_left(job_id)
    if left is not None:
        return time.time() + left, f"SLURM job {job_id}: {left:.0f} s left (squeue)"
    if time_limit_minutes and time_limit_minutes > 0:
        limit = time_limit_minutes * 60 - STARTUP_ALLOWANCE_S
        return started + limit, f"SLURM job {job_id}: squeue gave no time left; the time limit of this attempt"
    return None, f"SLURM job {job_id}: no time limit known"
