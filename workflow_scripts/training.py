"""Full fine-tuning of one model on one difficulty bin with TRL, loss on the answer only.

Run it through ``launch`` (what the ``train`` rule does): that starts ``accelerate launch`` with the
DeepSpeed ZeRO-3 config and the process count from the config, then each rank runs ``train``.
The output folder holds a ZeRO checkpoint (``global_step*/``), the tokenizer, ``training.json`` and a
probe (fixed input, the trained model's logits) that the conversion step checks its export against.

Resume: a Trainer checkpoint is written every ``--checkpoint-minutes`` of training (wall time, never
at the final step, whose save follows anyway) to a work folder that is not a Snakemake output
(Snakemake deletes a failed job's outputs). A checkpoint counts once every rank has finished writing
it (a ``COMPLETE`` marker); a job killed by a preemption, a time limit or SIGKILL resumes from the
newest complete one when it runs again. The work folder is removed once the model is converted.
Under ZeRO-3 each checkpoint writes the ZeRO state once (the Trainer would write it twice). The
``training.json`` beside the model lists every checkpoint taken (step, seconds, bytes written).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from workflow_scripts import job_deadline, prompts
from workflow_scripts.io_utils import one_line_errors

PROBE_TEXT = "Question: What is 2 plus 2?\nA) 3\nB) 4\nAnswer:\n"
COMPLETE_MARKER = "COMPLETE"
CHECKPOINT_LOG = "checkpoints.json"  # in each checkpoint: every checkpoint of the job up to this one
# Exit status of a run stopped on purpose after a checkpoint (--stop-halfway, the pilot's resume drill).
STOPPED_FOR_RESUME = 75


@dataclass
class TrainSettings:
    """The hyper-parameters one training job depends on: every one given (rules/common/arguments.smk passes the
    config's, whose defaults are the study's and live in config/schema.yaml only)."""

    learning_rate: float
    epochs: float
    per_device_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    lr_scheduler: str
    warmup_ratio: float
    weight_decay: float
    adam_beta1: float
    adam_beta2: float
    max_grad_norm: float
    optim: str
    cpu_optim: str  # used instead of `optim` where no CUDA device exists (bitsandbytes needs one)
    bf16: bool
    seed: int
    max_length: int
    use_liger_kernel: bool
    system_prompt: str | None
    # The date a chat template prints (Llama 3.x: "Today Date: ..."; without it, today's date, so the
    # prompts would change with the calendar). The same value goes to lm-eval (evaluation.py).
    chat_template_date: str | None

    @classmethod
    def from_json(cls, text: str) -> "TrainSettings":
        values = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        missing = sorted(known - set(values))
        if missing:
            raise ValueError(f"training settings {missing} not given; every setting comes from the config")
        return cls(**values)


def chat_template_kwargs(date: str | None) -> dict:
    """What the chat template is rendered with besides the messages (TRL and the probe alike)."""
    return {"date_string": date} if date else {}


def conversations(
    table: pd.DataFrame, prompt_format: str, system_prompt: str | None, chat_template_date: str | None = None
) -> list[dict]:
    """Prompt/completion conversations: TRL computes the loss on the completion (the answer) only."""
    examples = []
    for row in table.to_dict("records"):
        user, target = prompts.render(prompt_format, row)
        prompt = [{"role": "user", "content": user}]
        if system_prompt is not None:
            prompt.insert(0, {"role": "system", "content": system_prompt})
        example = {"prompt": prompt, "completion": [{"role": "assistant", "content": target}]}
        if chat_template_date:  # TRL renders each example with its own chat_template_kwargs
            example["chat_template_kwargs"] = chat_template_kwargs(chat_template_date)
        examples.append(example)
    return examples


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


def _all_ranks(values: list[float], op: str, device) -> list[float]:
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
    """When SLURM will kill the job (epoch seconds; workflow_scripts/job_deadline.py) and the seconds a
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
                reason = _broadcast_from_rank_zero(reason, args.device)
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
            (written,) = _all_ranks([written], "sum", args.device)
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


def _broadcast_from_rank_zero(value: int, device) -> int:
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


def trainer_class():
    """TRL's SFTTrainer, writing the ZeRO state once per checkpoint.

    Under ZeRO-3 without a gathered 16-bit model (zero3_save_16bit_model: false), transformers 5.23's
    Trainer._save_checkpoint writes the full ZeRO state twice into the same folder: save_model falls
    back to DeepSpeed's save_checkpoint, then _save_optimizer_and_scheduler calls save_checkpoint
    again. Inside a checkpoint, save_model here writes only what it adds (config, tokenizer); the
    second call writes the state that resuming loads. A final save_model (not inside a checkpoint)
    writes the ZeRO state as before, once."""
    from transformers.trainer_pt_utils import remove_dummy_checkpoint
    from transformers.utils import SAFE_WEIGHTS_NAME, WEIGHTS_NAME
    from trl import SFTTrainer

    class SFTTrainerOneZeroWrite(SFTTrainer):
        def save_model(self, output_dir=None, _internal_call=False):
            if _internal_call and self._zero_state_follows_in_checkpoint():
                self._save(output_dir, state_dict={})
                remove_dummy_checkpoint(self.args.should_save, output_dir, [WEIGHTS_NAME, SAFE_WEIGHTS_NAME])
                return
            super().save_model(output_dir, _internal_call=_internal_call)

        def _zero_state_follows_in_checkpoint(self) -> bool:
            if not self.is_deepspeed_enabled or self.args.save_only_model:
                return False
            engine = self.model_wrapped
            return engine.zero_optimization_stage() == 3 and not engine.zero_gather_16bit_weights_on_model_save()

    return SFTTrainerOneZeroWrite


def experiment_trackers() -> list[str] | str:
    """W&B when the environment names a project (WANDB_PROJECT), offline unless WANDB_MODE says otherwise.

    Read from the environment, not the config: where curves are logged does not change a model, so it
    must not make finished training jobs stale.
    """
    if os.environ.get("WANDB_PROJECT"):
        os.environ.setdefault("WANDB_MODE", "offline")
        return ["wandb"]
    return "none"


def build_trainer(
    model_path: str,
    train_file: str,
    prompt_format: str,
    output_dir: str,
    settings: TrainSettings,
    checkpoint_minutes: float = 0,
    stop_halfway: bool = False,
    clock=time.monotonic,
    history: list | None = None,
    deadline: Deadline | None = None,
    wall_clock=time.time,
    memory_probe_steps: int = 0,
):
    """The SFTTrainer of one job. ``output_dir`` receives a Trainer checkpoint every ``checkpoint_minutes``
    of training and one before the ``deadline`` (``clock``, ``wall_clock``: where the time comes from;
    a test passes its own). With ``memory_probe_steps``, the pilot's memory probe instead: that many
    optimizer steps on the bin's longest example stretched to max_length tokens (memory_probe_examples)."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.chat_template is None:
        raise ValueError(f"tokenizer of {model_path} has no chat template; use an instruct model")
    if tokenizer.pad_token is None or tokenizer.pad_token == tokenizer.eos_token:
        # Llama 3 ships no pad token; padding with EOS would mask the EOS we train on.
        if "<|finetune_right_pad_id|>" in tokenizer.get_vocab():
            tokenizer.pad_token = "<|finetune_right_pad_id|>"
    table = pd.read_parquet(train_file)
    examples = conversations(table, prompt_format, settings.system_prompt, settings.chat_template_date)
    if memory_probe_steps:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        per_step = settings.per_device_batch_size * settings.gradient_accumulation_steps * world
        examples = memory_probe_examples(examples, tokenizer, settings, memory_probe_steps * per_step)
    train_dataset = datasets.Dataset.from_list(examples)
    args = SFTConfig(
        output_dir=output_dir,
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=memory_probe_steps or -1,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        activation_checkpointing=settings.gradient_checkpointing,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        max_grad_norm=settings.max_grad_norm,
        optim=settings.optim if torch.cuda.is_available() else settings.cpu_optim,
        bf16=settings.bf16,
        seed=settings.seed,
        data_seed=settings.seed,
        max_length=settings.max_length,
        use_liger_kernel=settings.use_liger_kernel,
        completion_only_loss=True,
        # The wall-clock callback decides when to save; with "steps" the Trainer would also save at the
        # final step, just before the final save_model.
        save_strategy="no",
        save_total_limit=None,  # the callback keeps the newest complete checkpoint
        logging_steps=1,
        report_to=experiment_trackers(),
        # Without CUDA, use_cpu makes the Trainer see the gloo world DeepSpeed runs in (else it counts
        # one process and DeepSpeed's batch-size check fails).
        use_cpu=not torch.cuda.is_available(),
    )
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16 if settings.bf16 else torch.float32)
    checkpoints = make_checkpoint_callback(checkpoint_minutes, stop_halfway, clock, history, deadline, wall_clock)
    trainer = trainer_class()(
        model=model, args=args, train_dataset=train_dataset, processing_class=tokenizer, callbacks=[checkpoints]
    )
    trainer.checkpoints = checkpoints
    return trainer


def memory_probe_examples(examples: list[dict], tokenizer, settings: TrainSettings, count: int) -> list[dict]:
    """`count` copies of the example with the longest user turn, that turn repeated until prompt and
    answer fill max_length tokens (the prompt staying under it: TRL drops a row whose prompt alone fills
    it). Every batch of the probe then holds the longest sequences any job of these settings can see."""
    longest = max(examples, key=lambda example: len(example["prompt"][-1]["content"]))
    kwargs = longest.get("chat_template_kwargs", {})

    def tokens(prompt: list[dict], completion: list[dict] = ()) -> int:
        text = tokenizer.apply_chat_template(
            [*prompt, *completion], tokenize=False, add_generation_prompt=not completion, **kwargs
        )
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    base = longest["prompt"][-1]["content"]
    answer = tokens(longest["prompt"], longest["completion"]) - tokens(longest["prompt"])
    prompt = [dict(turn) for turn in longest["prompt"]]
    # Repeat the whole user turn while prompt and answer fit, then its words up to the limit.
    while True:
        grown = [*prompt[:-1], {**prompt[-1], "content": prompt[-1]["content"] + "\n" + base}]
        if tokens(grown) + answer >= settings.max_length - 1:
            break
        prompt = grown
    words = base.split()
    while words and tokens(prompt) + answer < settings.max_length:
        grown = [*prompt[:-1], {**prompt[-1], "content": prompt[-1]["content"] + " " + words.pop(0)}]
        if tokens(grown) >= settings.max_length - 1:
            break
        prompt = grown
    return [{**longest, "prompt": prompt} for _ in range(count)]


def probe_input_ids(tokenizer, chat_template_date: str | None = None):
    import torch

    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROBE_TEXT}],
        tokenize=False,
        add_generation_prompt=True,
        **chat_template_kwargs(chat_template_date),
    )
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def train(args) -> None:
    import pyarrow.parquet
    import torch

    settings = TrainSettings.from_json(args.settings)
    started = time.time()
    work_dir = Path(args.work_dir)
    done = complete_checkpoints(work_dir)
    resume_from = str(done[-1]) if done else None
    trainer = build_trainer(
        args.model,
        args.train_file,
        args.prompt_format,
        str(work_dir),
        settings,
        args.checkpoint_minutes,
        bool(args.stop_halfway),
        history=checkpoint_history(resume_from),
        deadline=Deadline(args.deadline or None, args.checkpoint_seconds),
        memory_probe_steps=args.memory_probe_steps,
    )
    if args.memory_probe_steps:
        run_memory_probe(trainer, settings, args.probe_out, work_dir)
        return
    if resume_from and trainer.is_world_process_zero():
        print(f"resuming from {resume_from} (a previous attempt of this job was stopped)", flush=True)
    rows_given = pyarrow.parquet.read_metadata(args.train_file).num_rows
    dropped = rows_given - len(trainer.train_dataset)
    if dropped and trainer.is_world_process_zero():
        # TRL 1.16 drops a row whose prompt alone fills max_length (no answer token survives the cut);
        # the study's collator kept it, fully masked, as an example and a step: fewer steps here.
        print(
            f"warning: {dropped} of {rows_given} training rows dropped: the prompt alone fills max_length "
            f"({settings.max_length} tokens), leaving no answer token to train on; the study kept them fully "
            "masked (config/README.md, known deviations)",
            flush=True,
        )
    result = trainer.train(resume_from_checkpoint=resume_from)
    if trainer.checkpoints.stopped:
        if trainer.is_world_process_zero():
            print(
                f"stopped on purpose after checkpoint-{trainer.state.global_step} (--stop-halfway): "
                "the next attempt of this job resumes from it",
                flush=True,
            )
        end_ranks(trainer)
        raise SystemExit(STOPPED_FOR_RESUME)
    save_started, before = time.time(), bytes_written_by_this_process()
    trainer.save_model(args.output_dir)
    after = bytes_written_by_this_process()
    (final_written,) = _all_ranks([after - before if None not in (before, after) else -1], "sum", trainer.args.device)
    final_save = {
        "seconds": round(time.time() - save_started, 3),
        "bytes_written": int(final_written) if final_written >= 0 else None,
    }

    # Every rank takes part in this forward pass: under ZeRO-3 each holds a shard of the weights.
    probe = probe_input_ids(trainer.processing_class, settings.chat_template_date)
    trainer.model.eval()
    with torch.no_grad():
        logits = trainer.model(input_ids=probe.to(trainer.args.device)).logits.float().cpu()
    peaks = peak_memory(trainer.args.device)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        output = Path(args.output_dir)
        final_save["bytes_on_disk"] = folder_bytes(output)
        trainer.processing_class.save_pretrained(output)
        train_dtype = "bfloat16" if settings.bf16 else "float32"
        torch.save({"input_ids": probe, "logits": logits, "dtype": train_dtype}, output / "probe.pt")
        record = training_record(trainer, result, settings, time.time() - started, resume_from, rows_given)
        record.update(
            checkpoint_minutes=args.checkpoint_minutes,
            checkpoints=trainer.checkpoints.history,
            checkpoint_bytes_written=sum(c["bytes_written"] or 0 for c in trainer.checkpoints.history),
            final_save=final_save,
            **peaks,
        )
        (output / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    # The work folder stays: the job may still be killed (a time limit) before it exits, and Snakemake
    # then deletes its output; the retry must resume from the last checkpoint, not from step 0. The
    # convert job removes it once the model is converted (conversion.py --training-work-dir).
    end_ranks(trainer)


def run_memory_probe(trainer, settings: TrainSettings, out: str, work_dir: Path) -> None:
    """The pilot's memory probe: the steps of build_trainer(memory_probe_steps=...), then what they held
    at their peak (GPU memory of the most loaded rank, its host RSS) beside the GPU's size, written to
    `out` (no model is saved: the probe answers whether the grid's worst batch fits)."""
    import torch

    from workflow_scripts.io_utils import atomic_write_json

    started = time.time()
    trainer.train()
    seconds = time.time() - started
    peaks = peak_memory(trainer.args.device)
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        record = {
            "steps": trainer.state.global_step,
            "sequence_tokens": len(trainer.train_dataset[0]["input_ids"]),
            "max_length": settings.max_length,
            "per_device_batch_size": settings.per_device_batch_size,
            "gradient_accumulation_steps": settings.gradient_accumulation_steps,
            "gradient_checkpointing": settings.gradient_checkpointing,
            "world_size": trainer.args.world_size,
            "seconds_per_step": round(seconds / max(trainer.state.global_step, 1), 3),
            "gpu_memory_bytes": torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else None,
            "parameters": sum(getattr(p, "ds_numel", p.numel()) for p in trainer.model.parameters()),
            "optimizer_class": innermost_optimizer(trainer.optimizer),
            **peaks,
        }
        atomic_write_json(record, out)
        print(json.dumps(record), flush=True)
        shutil.rmtree(work_dir, ignore_errors=True)
    end_ranks(trainer)


def end_ranks(trainer) -> None:
    """Every rank waits for rank 0's writes, then leaves the process group before Python exits. A
    rank that exits with its group alive can abort in the C++ teardown ("terminate called without an
    active exception", SIGABRT), and the launcher then fails a job whose model is already written."""
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()  # destroys the process group (accelerate's state)


def peak_memory(device) -> dict:
    """The largest peak over the ranks: host RSS of one rank, GPU memory the caching allocator held."""
    import resource

    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    gpu = torch.cuda.max_memory_reserved() if torch.cuda.is_available() else 0
    rss, gpu = _all_ranks([rss, gpu], "max", device)
    return {"peak_rank_rss_bytes": int(rss), "peak_gpu_memory_bytes": int(gpu) if gpu else None}


def training_record(
    trainer, result, settings: TrainSettings, wall_time: float, resumed_from: str | None, rows_given: int
) -> dict:
    """What a researcher wants to know about one training run, kept beside the model. ``rows_given``:
    the training file's rows; those TRL left out of its dataset are the ones over ``max_length``."""
    from workflow_scripts.io_utils import package_versions

    import torch.distributed as dist

    history = trainer.state.log_history
    steps = [row for row in history if "loss" in row]
    tokens = max((float(row.get("num_tokens", 0)) for row in steps), default=0.0)
    runtime = result.metrics.get("train_runtime") or wall_time
    return {
        "global_step": trainer.state.global_step,
        "resumed_from_step": checkpoint_step(Path(resumed_from)) if resumed_from else None,
        "epochs": settings.epochs,
        "examples": len(trainer.train_dataset),
        "rows_given": rows_given,
        "rows_dropped_over_max_length": rows_given - len(trainer.train_dataset),
        "tokens_seen": tokens,
        "final_loss": steps[-1]["loss"] if steps else None,
        "loss_per_step": [{"step": row["step"], "loss": row["loss"]} for row in steps],
        "train_runtime_s": runtime,
        "wall_time_s": wall_time,
        "tokens_per_second": tokens / runtime if runtime else None,
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "world_size": trainer.args.world_size,
        "tokens_per_second_per_gpu": tokens / runtime / trainer.args.world_size if runtime else None,
        # Under ZeRO-3 each rank holds a shard; ds_numel is the whole parameter's size.
        "parameters": sum(getattr(p, "ds_numel", p.numel()) for p in trainer.model.parameters()),
        "backend": dist.get_backend() if dist.is_available() and dist.is_initialized() else None,
        "mixed_precision": str(trainer.accelerator.mixed_precision),
        "optimizer": getattr(trainer.args.optim, "value", str(trainer.args.optim)),
        "optimizer_class": innermost_optimizer(trainer.optimizer),
        "settings": settings.__dict__,
        "versions": package_versions("torch", "transformers", "trl", "accelerate", "deepspeed", "liger-kernel"),
    }


def innermost_optimizer(optimizer) -> str:
    """The optimizer doing the update, under accelerate's and DeepSpeed's wrappers (e.g. PagedAdamW8bit)."""
    for _ in range(5):
        inner = getattr(optimizer, "optimizer", None)
        if inner is None or inner is optimizer:
            break
        optimizer = inner
    return type(optimizer).__name__


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(args) -> list[str]:
    """The accelerate command line; the process count comes from one config value."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        args.accelerate_config,
        "--num_processes",
        str(args.num_processes),
        "--main_process_port",
        str(free_port()),
        "-m",
        "workflow_scripts.training",
        "train",
        "--model",
        args.model,
        "--train-file",
        args.train_file,
        "--prompt-format",
        args.prompt_format,
        "--output-dir",
        args.output_dir,
        "--work-dir",
        args.work_dir,
        "--checkpoint-minutes",
        str(args.checkpoint_minutes),
        "--stop-halfway",
        str(args.stop_halfway),
        "--deadline",
        str(args.deadline),
        "--checkpoint-seconds",
        str(args.checkpoint_seconds),
        "--memory-probe-steps",
        str(args.memory_probe_steps),
        *(["--probe-out", args.probe_out] if args.probe_out else []),
        "--settings",
        args.settings,
    ]


def checkpoint_estimate(model_dir: str) -> float:
    """Seconds one checkpoint of this model is expected to take (sizing.py's storage assumption); 0 where
    the model's size cannot be read (then the job's own first checkpoint tells)."""
    from workflow_scripts import sizing

    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
        return round(sizing.checkpoint_write_seconds(sizing.parameter_count(config)), 1)
    except (OSError, ValueError, KeyError):
        return 0.0


def claim_work_dir(args) -> None:
    """Checkpoints in the work folder resume this job only if an attempt of the same training wrote them:
    the folder outlives a finished job until its convert job runs, so a config edit in between (a new
    learning rate, another GPU count) would otherwise resume the old run and finish it as the new one."""
    identity = {
        "model": args.model,
        "train_file": args.train_file,
        "prompt_format": args.prompt_format,
        "num_processes": args.num_processes,
        "settings": json.loads(args.settings),
    }
    work_dir, record = Path(args.work_dir), Path(args.work_dir) / "job.json"
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


def launch(args) -> None:
    from workflow_scripts import runtime

    # Before any rank starts: a GPU job that sees no (or too few) CUDA devices would otherwise train
    # on the CPU (gloo, CPU optimizer) until its time limit, then again with each retry.
    problem = runtime.missing_gpus(args.gpus, "resources.train.gpu")
    if problem:
        raise ValueError(problem)
    print(runtime.describe_caches(), file=sys.stderr)
    for lock in runtime.clear_stale_build_locks():
        print(f"removed {lock}: a build lock left by a job killed while building (older than 15 min)", file=sys.stderr)
    if not args.memory_probe_steps:
        claim_work_dir(args)
    args.deadline, how = job_deadline.deadline(args.time_limit_minutes, started=time.time())
    args.deadline = args.deadline or 0
    args.checkpoint_seconds = args.checkpoint_seconds or checkpoint_estimate(args.model)
    print(
        f"time limit: {how}; a checkpoint is written before it" if args.deadline else f"time limit: {how}", flush=True
    )
    env = dict(os.environ)
    # The ranks import workflow_scripts from the repository, wherever the job runs.
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH")) if p)
    ranks = subprocess.run(launch_command(args), env=env)
    if ranks.returncode != 0:
        # The failing rank's traceback is above; this stays the log's last line.
        print(
            f"error: training failed: accelerate launch exited with status {ranks.returncode} "
            "(the first failing rank's traceback is above)",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(ranks.returncode)


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["launch", "train"])
    parser.add_argument("--model", required=True, help="hub name or local path of the base model")
    parser.add_argument("--train-file", required=True, help="parquet of one difficulty bin")
    parser.add_argument("--prompt-format", required=True, choices=sorted(prompts.FORMATTERS))
    parser.add_argument("--output-dir", required=True, help="the final ZeRO checkpoint (a Snakemake output)")
    parser.add_argument("--work-dir", required=True, help="Trainer checkpoints for resuming (not an output)")
    parser.add_argument(
        "--checkpoint-minutes", type=float, default=0, help="checkpoint every N minutes of training (0: never)"
    )
    parser.add_argument(
        "--stop-halfway", type=int, default=0, help="1: checkpoint half way, then stop (a resume drill)"
    )
    parser.add_argument(
        "--time-limit-minutes", type=float, default=0, help="this attempt's time limit (launch mode; 0: none)"
    )
    parser.add_argument(
        "--deadline", type=float, default=0, help="epoch seconds when the job is killed (train mode; 0: none)"
    )
    parser.add_argument(
        "--checkpoint-seconds", type=float, default=0, help="expected seconds to write one checkpoint (the estimate)"
    )
    parser.add_argument(
        "--memory-probe-steps", type=int, default=0, help="the pilot's memory probe: this many steps at max_length"
    )
    parser.add_argument("--probe-out", help="the memory probe's report (JSON)")
    parser.add_argument("--settings", required=True, help="JSON of TrainSettings fields")
    parser.add_argument("--accelerate-config", help="accelerate/DeepSpeed yaml (launch mode)")
    parser.add_argument("--num-processes", type=int, default=1, help="ranks to start (launch mode)")
    parser.add_argument(
        "--gpus", type=int, default=0, help="GPUs the job asked for; fewer visible stops it (launch mode)"
    )
    args = parser.parse_args(argv)
    TrainSettings.from_json(args.settings)  # fail before any process starts
    if args.mode == "launch":
        launch(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
