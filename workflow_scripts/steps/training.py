"""Full fine-tuning of one model on one difficulty bin with TRL, loss on the answer only.

Run it through ``launch`` (what the ``train`` rule does): that starts ``accelerate launch`` with the
DeepSpeed ZeRO-3 config and the process count from the config (workflow_scripts/lib/launcher.py), then
each rank runs ``train``; a job across nodes runs ``node`` once per node in between, each launching its
node's ranks. The output folder holds a ZeRO checkpoint (``global_step*/``), the tokenizer,
``training.json`` and a probe (fixed input, the trained model's logits) that the conversion step checks
its export against. Checkpoints for resuming, and when they are written: workflow_scripts/lib/checkpoints.py.

The hyper-parameters are the config's `training` section, merged per model and dataset
(rules/common/settings.smk): every key is an SFTConfig field passed as it is, apart from the few the
study's scripts named otherwise (SFT_NAMES) and the workflow's own (OWN_KEYS). A new TRL setting is one
schema entry (config/schema.yaml) under SFTConfig's name.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd

from workflow_scripts.lib import job_deadline, launcher, prompts
from workflow_scripts.lib.checkpoints import (
    STOPPED_FOR_RESUME,
    Deadline,
    all_ranks,
    bytes_written_by_this_process,
    checkpoint_estimate,
    checkpoint_history,
    checkpoint_step,
    claim_work_dir,
    complete_checkpoints,
    folder_bytes,
    make_checkpoint_callback,
)
from workflow_scripts.lib.io_utils import one_line_errors

PROBE_TEXT = "Question: What is 2 plus 2?\nA) 3\nB) 4\nAnswer:\n"


# Config keys the study's scripts named otherwise, and the SFTConfig field each one sets; every other key
# of a job's settings is an SFTConfig field of its own name and is passed through as it is.
SFT_NAMES = {
    "epochs": "num_train_epochs",
    "per_device_batch_size": "per_device_train_batch_size",
    "gradient_checkpointing": "activation_checkpointing",
    "lr_scheduler": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",  # a float < 1 is a ratio of the total steps
}
# The workflow's own keys, no SFTConfig field: `cpu_optim` replaces `optim` where no CUDA device exists
# (bitsandbytes needs one); the system prompt and the date a chat template prints (Llama 3.x: "Today
# Date: ..."; without it, today's, so the prompts would change with the calendar) shape the examples.
OWN_KEYS = ("cpu_optim", "system_prompt", "chat_template_date")
# What the job sets itself: a setting of the same name would fight it.
JOB_FIELDS = (
    "output_dir",
    "max_steps",
    "data_seed",
    "completion_only_loss",
    "save_strategy",
    "save_total_limit",
    "logging_steps",
    "report_to",
    "use_cpu",
)
# Read by this module by name: a job's settings must give them (they all have schema defaults).
REQUIRED = (*SFT_NAMES, *OWN_KEYS, "optim", "bf16", "seed", "max_length", "gradient_accumulation_steps")


class TrainSettings(dict):
    """One training job's settings as the workflow passes them (rules/common/settings.smk train_settings:
    the config's, whose defaults are the study's and live in config/schema.yaml only); keys read as
    attributes (settings.max_length)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def from_json(cls, text: str) -> "TrainSettings":
        values = json.loads(text)
        missing = sorted(set(REQUIRED) - set(values))
        if missing:
            raise ValueError(f"training settings {missing} not given; every setting comes from the config")
        taken = sorted(set(values) & set(JOB_FIELDS))
        if taken:
            raise ValueError(f"training settings {taken} are set by the training step itself; fix: remove them")
        return cls(values)

    def sft_arguments(self, cuda: bool) -> dict:
        """SFTConfig's keyword arguments for these settings (ValueError naming a key SFTConfig lacks)."""
        from dataclasses import fields

        from trl import SFTConfig

        arguments = {SFT_NAMES.get(key, key): value for key, value in self.items() if key not in OWN_KEYS}
        unknown = sorted(set(arguments) - {field.name for field in fields(SFTConfig)})
        if unknown:
            raise ValueError(
                f"training settings {unknown} are no fields of TRL's SFTConfig; fix: name a setting as "
                "SFTConfig does (config/schema.yaml, training)"
            )
        if not cuda:
            arguments["optim"] = self.cpu_optim
        return {**arguments, "data_seed": self.seed}


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
        max_steps=memory_probe_steps or -1,
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
        **settings.sft_arguments(cuda=torch.cuda.is_available()),
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
    resume_from = args.resume_from or None
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
    (final_written,) = all_ranks([after - before if None not in (before, after) else -1], "sum", trainer.args.device)
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

    from workflow_scripts.lib.io_utils import atomic_write_json

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
    rss, gpu = all_ranks([rss, gpu], "max", device)
    return {"peak_rank_rss_bytes": int(rss), "peak_gpu_memory_bytes": int(gpu) if gpu else None}


def training_record(
    trainer, result, settings: TrainSettings, wall_time: float, resumed_from: str | None, rows_given: int
) -> dict:
    """What a researcher wants to know about one training run, kept beside the model. ``rows_given``:
    the training file's rows; those TRL left out of its dataset are the ones over ``max_length``."""
    from workflow_scripts.lib.io_utils import package_versions

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
        "settings": dict(settings),
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


def rank_arguments(args) -> list[str]:
    """What each rank is started with: this job's arguments in `train` mode."""
    return [
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
        *(["--resume-from", args.resume_from] if args.resume_from else []),
        "--settings",
        args.settings,
    ]


def node_arguments(args, job: launcher.SlurmJob, main_port: int) -> list[str]:
    """What each node's launcher is started with: the ranks' arguments, and what it launches them with."""
    return [
        "node",
        *rank_arguments(args)[1:],
        "--accelerate-config",
        args.accelerate_config,
        "--num-processes",
        str(args.num_processes),
        "--nodes",
        str(args.nodes),
        "--gpus",
        str(args.gpus),
        "--node-order",
        ",".join(job.nodes),
        "--main-address",
        launcher.node_address(job.nodes[0]),
        "--main-port",
        str(main_port),
    ]


def job_identity(args) -> dict:
    """What a training's checkpoints depend on (checkpoints.claim_work_dir)."""
    return {
        "model": args.model,
        "train_file": args.train_file,
        "prompt_format": args.prompt_format,
        "num_processes": args.num_processes,
        "settings": json.loads(args.settings),
    }


def launch(args) -> None:
    """The job's own process: what every rank must agree on (which checkpoint to resume, the deadline),
    decided once, then the ranks: here, or through one launcher per node (node())."""
    if args.num_processes % args.nodes:
        raise ValueError(f"--num-processes {args.num_processes} does not spread evenly over --nodes {args.nodes}")
    if args.nodes == 1:
        launcher.prepare_job(args.gpus, "resources.train.gpu")
    if not args.memory_probe_steps:
        claim_work_dir(args.work_dir, job_identity(args))
        done = complete_checkpoints(args.work_dir)
        args.resume_from = str(done[-1]) if done else None
    args.deadline, how = job_deadline.deadline(args.time_limit_minutes, started=time.time())
    args.deadline = args.deadline or 0
    args.checkpoint_seconds = args.checkpoint_seconds or checkpoint_estimate(args.model)
    print(
        f"time limit: {how}; a checkpoint is written before it" if args.deadline else f"time limit: {how}", flush=True
    )
    if args.nodes == 1:
        command = launcher.accelerate_command(
            args.accelerate_config, args.num_processes, "workflow_scripts.steps.training", rank_arguments(args)
        )
    else:
        job = launcher.slurm_job(args.nodes)
        print(
            f"{args.num_processes} ranks on {args.nodes} nodes: {', '.join(job.nodes)} (main: {job.nodes[0]})",
            flush=True,
        )
        node_command = [
            sys.executable,
            "-m",
            "workflow_scripts.steps.training",
            *node_arguments(args, job, launcher.free_port()),
        ]
        command = launcher.srun_command(job, node_command)
    launcher.run_ranks(command)


def node(args) -> None:
    """One node's launcher in a job across nodes: its GPUs checked, then its share of the ranks, with
    its machine rank (its node's place in --node-order)."""
    order = args.node_order.split(",")
    rank = launcher.machine_rank(order)
    launcher.prepare_job(args.gpus, "resources.train.gpu")
    print(f"node {rank} of {len(order)}: {args.num_processes // len(order)} ranks", flush=True)
    machines = launcher.Machines(len(order), rank, args.main_address, args.main_port)
    command = launcher.accelerate_command(
        args.accelerate_config,
        args.num_processes,
        "workflow_scripts.steps.training",
        rank_arguments(args),
        machines,
    )
    launcher.run_ranks(command)


@one_line_errors
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["launch", "node", "train"])
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
    parser.add_argument("--settings", required=True, help="JSON of the job's training settings (TrainSettings)")
    parser.add_argument("--accelerate-config", help="accelerate/DeepSpeed yaml (launch mode)")
    parser.add_argument("--num-processes", type=int, default=1, help="ranks to start (launch mode)")
    parser.add_argument(
        "--gpus", type=int, default=0, help="GPUs each node of the job asked for; fewer visible stops it"
    )
    parser.add_argument(
        "--nodes", type=int, default=1, help="nodes of the job (launch mode): >1 starts one launcher per node"
    )
    parser.add_argument("--resume-from", help="the checkpoint every rank resumes from (launch mode decides it)")
    parser.add_argument("--node-order", help="the job's nodes, the main one first (node mode)")
    parser.add_argument("--main-address", help="where rank 0 listens (node mode)")
    parser.add_argument("--main-port", type=int, help="rank 0's port (node mode)")
    args = parser.parse_args(argv)
    TrainSettings.from_json(args.settings)  # fail before any process starts
    if args.mode == "launch":
        launch(args)
    elif args.mode == "node":
        node(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
