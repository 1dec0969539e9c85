"""The checkpoint-and-resume protocol of a training job, on every rank.

A Trainer checkpoint is written every `checkpoint_minutes` of training (wall time, never at the final
step, whose save follows anyway) and once before the job's time limit, to a work folder that is not a
Snakemake output (Snakemake deletes a failed job's outputs). A checkpoint counts once every rank has
finished writing it (a `COMPLETE` marker); a job killed by a preemption, a time limit or SIGKILL resumes
from the newest complete one when it runs again, if the same training wrote it (job.json). Each
checkpoint lists every checkpoint of the job up to it (step, reason, seconds, bytes written), so that
a resumed attempt keeps the history. The convert job removes the folder once the model is converted.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

COMPLETE_MARKER = "COMPLETE"
CHECKPOINT_LOG = "checkpoints.json"  # in each checkpoint: every checkpoint of the job up to this one
# Exit status of a run stopped on purpose after a checkpoint (--stop-halfway, the pilot's resume drill).
STOPPED_FOR_RESUME = 75


def checkpoint_step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def complete_checkpoints(work_dir) -> list[Path]:
    """Trainer checkpoints that every rank finished writing, oldest first."""
    found = [p for p in Path(work_dir).glob("checkpoint-*") if (p / COMPLETE_MARKER).exists()]
    return sorted(found, key=checkpoint_step)


def bytes_written_by_this_process() -> int | None:
    """Bytes this process has passed to write() so far (Linux /proc/self/io), None where unknown."""
    try:
        with open("/proc/self/io") as handle:
            return next(int(line.split()[1]) for line in handle if line.startswith("wchar:"))
    except (OSError, StopIteration, ValueError):
        return None


def folder_bytes(folder) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def all_ranks(values: list[float], op: str, device) -> list[float]:
    """values combined over every rank (sum or max); as they are in a single process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return tensor.tolist()


# Besides the estimated checkpoint write, what the deadline checkpoint keeps in hand: the clock's and
# squeue's resolution, and the step that may be running when the deadline comes due.
DEADLINE_MARGIN_S = 30.0
# Why a checkpoint was taken (rank 0 decides and sends the code to every rank).
REASONS = {1: "interval", 2: "time limit", 3: "resume drill"}


@dataclass
class Deadline:
    """When SLURM will kill the job (epoch seconds; workflow_scripts/lib/job_deadline.py) and the seconds a
    checkpoint is expected to take to write (the ZeRO state at the assumed storage rate, sizing.py)."""

    at: float | None = None
    checkpoint_s: float = 0.0


def make_checkpoint_callback(
    checkpoint_minutes: float,
    stop_halfway: bool = False,
    clock=time.monotonic,
    history: list | None = None,
    deadline: Deadline | None = None,
    wall_clock=time.time,
):
    """A callback that takes a checkpoint every `checkpoint_minutes` of training wall time (0: never),
    and one before the job's time limit (`deadline`), never at the final step; marks each complete once
    all ranks have written it, and drops older ones.

    The time-limit checkpoint is written when the time left no longer holds a checkpoint write (measured
    by this job's earlier checkpoints where there are any, else the estimate) plus DEADLINE_MARGIN_S and
    two steps, unless the remaining steps and the final save fit before the limit anyway. The job
    trains on after it: it may still finish; if SLURM kills it, the retry resumes from there.

    Rank 0's clock decides, for all ranks at once: a ZeRO-3 checkpoint is a collective, and ranks whose
    clocks disagreed by one step would wait on each other forever. `stop_halfway` takes one checkpoint
    half way through and then stops the run (the pilot's resume drill)."""
    from transformers import TrainerCallback

    limit = deadline or Deadline()

    class WallClockCheckpoints(TrainerCallback):
        def __init__(self):
            self.interval_s = checkpoint_minutes * 60
            self.history = list(history or [])
            self.stop_step = None
            self.stopped = False
            self.deadline_taken = False
            self._reason = None
            self._last = self._started = self._written = None
            self._began, self._first_step = None, 0

        def on_train_begin(self, args, state, control, **kwargs):
            self._last = clock()
            self._began, self._first_step = clock(), state.global_step
            halfway = math.ceil(state.max_steps / 2)
            if stop_halfway and state.global_step < halfway:
                self.stop_step = halfway

        def seconds_per_step(self, state) -> float:
            done = state.global_step - self._first_step
            return (clock() - self._began) / done if done > 0 else 0.0

        def checkpoint_seconds(self) -> float:
            """A checkpoint write: this job's slowest so far (earlier attempts too), else the estimate."""
            measured = [c["seconds"] for c in self.history if c.get("seconds")]
            return max([limit.checkpoint_s, *measured])

        def deadline_due(self, state) -> bool:
            if limit.at is None or self.deadline_taken or state.global_step >= state.max_steps:
                return False
            step_s, write_s = self.seconds_per_step(state), self.checkpoint_seconds()
            left = limit.at - wall_clock()
            finishes_in_time = (state.max_steps - state.global_step) * step_s + write_s < left - DEADLINE_MARGIN_S
            return left <= write_s + DEADLINE_MARGIN_S + 2 * step_s and not finishes_in_time

        def on_step_end(self, args, state, control, **kwargs):
            reason = 0
            if state.global_step == self.stop_step:
                reason = 3
            elif self.interval_s > 0 or limit.at is not None:
                if (
                    self.interval_s > 0
                    and clock() - self._last >= self.interval_s
                    and state.global_step < state.max_steps
                ):
                    reason = 1
                elif self.deadline_due(state):
                    reason = 2
                reason = broadcast_from_rank_zero(reason, args.device)
            if reason:
                control.should_save = True
                self._reason = REASONS[reason]
                self.deadline_taken = self.deadline_taken or reason == 2
                self._started, self._written = clock(), bytes_written_by_this_process()
            return control

        def on_save(self, args, state, control, **kwargs):
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.barrier()  # every rank's shards and RNG state are on disk
            after = bytes_written_by_this_process()
            written = after - self._written if None not in (after, self._written) else -1
            (written,) = all_ranks([written], "sum", args.device)
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                self.history.append(
                    {
                        "step": state.global_step,
                        "reason": self._reason,
                        "seconds": round(clock() - self._started, 3),
                        "bytes_written": int(written) if written >= 0 else None,
                        "bytes_on_disk": folder_bytes(folder),
                    }
                )
                (folder / CHECKPOINT_LOG).write_text(json.dumps(self.history, indent=2) + "\n")
                (folder / COMPLETE_MARKER).write_text(f"{state.global_step}\n")
                for older in complete_checkpoints(args.output_dir)[:-1]:
                    shutil.rmtree(older, ignore_errors=True)
                if self._reason == "time limit":
                    print(
                        f"checkpoint-{state.global_step} written before the time limit "
                        f"({limit.at - wall_clock():.0f} s left): if the job is killed, its retry resumes from it",
                        flush=True,
                    )
            self._last = clock()  # the interval counts training time, not the time spent saving
            if state.global_step == self.stop_step:
                control.should_training_stop = True
                self.stopped = True
            return control

    return WallClockCheckpoints()


def broadcast_from_rank_zero(value: int, device) -> int:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([int(value)], device=device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def checkpoint_history(checkpoint: str | None) -> list:
    """The checkpoints an earlier attempt of this job took, read from the one it resumes from."""
    if not checkpoint or not (Path(checkpoint) / CHECKPOINT_LOG).exists():
        return []
    return json.loads((Path(checkpoint) / CHECKPOINT_LOG).read_text())


def checkpoint_estimate(model_dir: str) -> float:
    """Seconds one checkpoint of this model is expected to take (sizing.py's storage assumption); 0 where
    the model's size cannot be read (then the job's own first checkpoint tells)."""
    from workflow_scripts.lib import sizing

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        return round(sizing.checkpoint_write_seconds(sizing.parameter_count(config)), 1)
    except (OSError, ValueError, KeyError):
        return 0.0


def claim_work_dir(work_dir, identity: dict) -> None:
    """Checkpoints in the work folder resume this job only if an attempt of the same training wrote them
    (`identity`: what the training depends on, recorded in job.json): the folder outlives a finished job
    until its convert job runs, so a config edit in between (a new learning rate, another GPU count)
    would otherwise resume the old run and finish it as the new one."""
    work_dir = Path(work_dir)
    record = work_dir / "job.json"
    try:
        same = json.loads(record.read_text()) == identity
    except (OSError, ValueError):
        same = False
    if not same and complete_checkpoints(work_dir):
        print(f"removed the checkpoints in {work_dir}: another training (its settings differ) wrote them", flush=True)
    if not same:
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(identity, indent=2) + "\n")
