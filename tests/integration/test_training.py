"""Loss mask and conversion, on the tiny model with real TRL, DeepSpeed ZeRO-3 and zero_to_fp32."""

import json
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from tests.support.workflow import REPO, training_settings
from workflow_scripts.lib import job_deadline, prompts
from workflow_scripts.lib.checkpoints import Deadline, complete_checkpoints
from workflow_scripts.steps import conversion
from workflow_scripts.steps.training import TrainSettings, build_trainer

CPU_SETTINGS = training_settings(
    epochs=1, bf16=False, optim="adamw_torch", learning_rate=1e-3, max_length=512, use_liger_kernel=False
)


@pytest.mark.parametrize(
    "model_fixture, system_prompt, end_of_turn",
    [
        ("tiny_model", None, "<|im_end|>\n"),  # Qwen2.5 layout; the template adds Qwen's system prompt
        ("tiny_llama", "", "<|eot_id|>"),  # Llama 3 layout; the study passes an empty system prompt
    ],
)
def test_loss_mask_is_exactly_the_answer(request, model_fixture, system_prompt, end_of_turn, arc_bins, tmp_path):
    import pandas as pd

    model = request.getfixturevalue(model_fixture)
    date = "26 Jul 2024"
    settings = TrainSettings.from_json(
        json.dumps({**CPU_SETTINGS, "system_prompt": system_prompt, "chat_template_date": date})
    )
    trainer = build_trainer(str(model), str(arc_bins / "bin-0.parquet"), "arc", str(tmp_path), settings)
    tokenizer = trainer.processing_class
    assert tokenizer.pad_token != tokenizer.eos_token
    rows = pd.read_parquet(arc_bins / "bin-0.parquet").to_dict("records")
    assert len(trainer.train_dataset) == len(rows)
    for example, row in zip(trainer.train_dataset, rows):
        user, target = prompts.render("arc", row)
        prompt = [{"role": "user", "content": user}]
        if system_prompt is not None:
            prompt.insert(0, {"role": "system", "content": system_prompt})
        labels, ids = example["labels"], example["input_ids"]
        answer_ids = [i for i, label in zip(ids, labels) if label != -100]
        context_ids = [i for i, label in zip(ids, labels) if label == -100]
        # The loss sees the answer and the end of the assistant turn, nothing of the prompt.
        assert tokenizer.decode(answer_ids) == f"{target}{end_of_turn}"
        assert tokenizer.decode(context_ids) == tokenizer.apply_chat_template(
            prompt, tokenize=False, add_generation_prompt=True, date_string=date
        )
        # The Llama layout prints the pinned date, not the day the job runs.
        if model_fixture == "tiny_llama":
            assert f"Today Date: {date}\n" in tokenizer.decode(context_ids)
        # The masked part is one contiguous tail: the answer comes after the whole prompt.
        first = labels.index(next(label for label in labels if label != -100))
        assert all(label != -100 for label in labels[first:])


def test_zero3_training_converts_to_the_same_logits(tiny_model, arc_bins, tmp_path):
    zero_dir, hf_dir = tmp_path / "zero", tmp_path / "hf"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "workflow_scripts.steps.training",
            "launch",
            "--model",
            str(tiny_model),
            "--train-file",
            str(arc_bins / "bin-1.parquet"),
            "--prompt-format",
            "arc",
            "--output-dir",
            str(zero_dir),
            "--work-dir",
            str(tmp_path / "work"),
            "--checkpoint-minutes",
            "0.00001",
            "--settings",
            json.dumps(CPU_SETTINGS),
            "--accelerate-config",
            str(REPO / "config/accelerate/zero3_cpu.yaml"),
            "--num-processes",
            "2",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    record = json.loads((zero_dir / "training.json").read_text())
    assert record["world_size"] == 2 and record["global_step"] == 5  # 20 rows / (2 ranks x batch 2)
    assert record["resumed_from_step"] is None and record["tokens_seen"] > 0 and len(record["loss_per_step"]) == 5
    # A checkpoint after every step (the interval is shorter than a step) but the last, whose save follows.
    assert [c["step"] for c in record["checkpoints"]] == [1, 2, 3, 4]
    # Each one wrote the ZeRO state once: as many bytes as the final save of the same state, where the
    # Trainer alone writes it twice (save_model's fallback, then the optimizer save): 2.6x measured.
    one_save = record["final_save"]["bytes_written"]
    assert all(one_save <= c["bytes_written"] <= 1.2 * one_save for c in record["checkpoints"]), record["checkpoints"]
    assert record["checkpoint_bytes_written"] == sum(c["bytes_written"] for c in record["checkpoints"])
    assert record["backend"] == "gloo" and record["optimizer"] == "adamw_torch" and record["optimizer_class"] == "AdamW"
    assert record["parameters"] == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model).parameters())
    # The last checkpoint stays until the model is converted: a job killed before it exits resumes.
    assert [int(p.name.split("-")[1]) for p in complete_checkpoints(tmp_path / "work")] == [4]
    assert list(zero_dir.glob("global_step*/zero_pp_rank_1_*model_states.pt")), "no ZeRO-3 shard of rank 1"

    report = conversion.convert(zero_dir, hf_dir, dtype="float32", max_shard_size="5GB")
    assert report["probe_max_abs_diff"] <= 1e-5
    made = json.loads((hf_dir / "conversion.json").read_text())
    assert made["code_sha256"] == conversion.code_checksum() and made["dtype"] == "float32" and made["probe"] == report

    # Independently of the conversion's own check: the export reproduces the logits that the
    # sharded model computed at the end of training, and they differ from the base model's.

    probe = torch.load(zero_dir / "probe.pt")
    exported = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        logits = exported(input_ids=probe["input_ids"]).logits
        base_logits = base(input_ids=probe["input_ids"]).logits
    torch.testing.assert_close(logits, probe["logits"], atol=1e-5, rtol=0)
    assert (logits - base_logits).abs().max() > 1e-3
    # Tied embeddings survive: one stored matrix, and the loaded head is the embedding.
    assert exported.lm_head.weight.data_ptr() == exported.model.embed_tokens.weight.data_ptr()
    assert "lm_head.weight" not in load_file(hf_dir / "model.safetensors")
    assert (hf_dir / "tokenizer.json").exists() and (hf_dir / "chat_template.jinja").exists()


class FakeClock:
    """Time as the checkpoint callback sees it: one minute per training step."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class OneMinutePerStep(TrainerCallback):
    def __init__(self, clock):
        self.clock = clock

    def on_step_begin(self, args, state, control, **kwargs):
        self.clock.now += 60


def trained_a_minute_a_step(tiny_model, arc_bins, tmp_path, epochs, minutes, deadline=None):
    """A trainer of bin 0 whose clocks (interval and deadline alike) advance a minute a step, run."""
    clock = FakeClock()
    settings = TrainSettings.from_json(json.dumps({**CPU_SETTINGS, "epochs": epochs}))
    trainer = build_trainer(
        str(tiny_model),
        str(arc_bins / "bin-0.parquet"),
        "arc",
        str(tmp_path / "work"),
        settings,
        checkpoint_minutes=minutes,
        clock=clock,
        deadline=deadline,
        wall_clock=clock,
    )
    trainer.add_callback(OneMinutePerStep(clock))
    trainer.train()
    return trainer


@pytest.mark.parametrize(
    "epochs, minutes, expected",
    [
        (1, 30, []),  # 10 steps of a minute, a checkpoint every 30 minutes: none
        (3, 7, [7, 14, 21, 28]),  # 30 steps: one per 7 minutes, none at the final step 30
        (3, 10, [10, 20]),  # due at step 30 too, but that is the final step: its save follows anyway
        (3, 0, []),  # 0: never
    ],
)
def test_checkpoints_follow_the_wall_clock_and_never_the_final_step(
    tiny_model, arc_bins, tmp_path, epochs, minutes, expected
):
    trainer = trained_a_minute_a_step(tiny_model, arc_bins, tmp_path, epochs, minutes)
    assert trainer.state.global_step == 10 * epochs  # 20 rows, batch 2, one process
    assert [c["step"] for c in trainer.checkpoints.history] == expected
    kept = complete_checkpoints(tmp_path / "work")
    assert [int(p.name.split("-")[1]) for p in kept] == expected[-1:]  # only the newest is kept
    for entry in trainer.checkpoints.history:
        assert entry["bytes_on_disk"] > 0 and entry["bytes_written"] >= entry["bytes_on_disk"] * 0.9


@pytest.mark.parametrize(
    "epochs, minutes, deadline_s, write_s, expected",
    [
        # 30 steps of a minute, killed at 30 min: a checkpoint once the time left (240 s at step 26)
        # no longer holds a write (120 s), the margin (30 s) and two steps.
        (3, 0, 1800, 120, [(26, "time limit")]),
        # The interval's checkpoints, then one before the limit, and only one.
        (3, 10, 1800, 120, [(10, "interval"), (20, "interval"), (26, "time limit")]),
        # The run ends (step 10, 600 s) before the limit: the last step and the final save fit, no write.
        (1, 0, 660, 0, []),
        # A limit beyond the run, and no SLURM job (no deadline): nothing.
        (1, 0, 3600, 120, []),
        (1, 0, None, 120, []),
    ],
)
def test_a_checkpoint_is_written_before_the_time_limit(
    tiny_model, arc_bins, tmp_path, epochs, minutes, deadline_s, write_s, expected
):
    trainer = trained_a_minute_a_step(tiny_model, arc_bins, tmp_path, epochs, minutes, Deadline(deadline_s, write_s))
    assert trainer.state.global_step == 10 * epochs
    assert [(c["step"], c["reason"]) for c in trainer.checkpoints.history] == expected


def test_a_build_lock_left_by_a_killed_job_is_removed(tmp_path, monkeypatch):
    from workflow_scripts.lib import runtime

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    stale, fresh = tmp_path / "py311_cpu/old_op/lock", tmp_path / "py311_cpu/building_op/lock"
    for lock in (stale, fresh):
        lock.parent.mkdir(parents=True)
        lock.write_text("")
    now = stale.stat().st_mtime + runtime.STALE_BUILD_LOCK_S + 1
    import os

    os.utime(fresh, (now - 60, now - 60))  # a build that started a minute ago: still someone's
    assert runtime.clear_stale_build_locks(now) == [str(stale)]
    assert not stale.exists() and fresh.exists()


def test_the_deadline_comes_from_squeue_else_from_the_time_limit():
    assert [job_deadline.parse_time_left(t) for t in ("4:05", "1:02:03", "2-00:00:10", "UNLIMITED", "INVALID")] == [
        245.0,
        3723.0,
        172810.0,
        None,
        None,
    ]
    at, how = job_deadline.deadline(30, started=0, environ={}, time_left=lambda job: 99)
    assert at is None and "no SLURM job" in how
    before = time.time()
    at, how = job_deadline.deadline(30, started=0, environ={"SLURM_JOB_ID": "7"}, time_left=lambda job: 100.0)
    assert before + 100 <= at <= time.time() + 100 and "(squeue)" in how
    at, how = job_deadline.deadline(30, started=1000.0, environ={"SLURM_JOB_ID": "7"}, time_left=lambda job: None)
    assert at == 1000.0 + 30 * 60 - job_deadline.STARTUP_ALLOWANCE_S and "time limit of this attempt" in how


def test_rows_whose_prompt_fills_max_length_are_counted_as_dropped(tiny_model, arc_bins, tmp_path, capsys):
    """TRL 1.16 drops such rows (the study kept them, fully masked): each job counts them and says so."""
    import pandas as pd

    from workflow_scripts.steps import training

    rows = pd.read_parquet(arc_bins / "bin-0.parquet")
    # Rows 0-2 get long questions with the same choices: row 0's prompt leaves room for one answer token,
    # row 1's (one digit more: one token more) fills max_length exactly, row 2's goes far past it.
    long_question = "Which value is largest? " + " ".join(f"item {i}" for i in range(60)) + " 7"
    for row, question in enumerate([long_question, long_question + "7", long_question * 3]):
        rows.at[row, "question"] = question
        rows.at[row, "choices"] = rows.at[0, "choices"]
    train_file = tmp_path / "bin.parquet"
    rows.to_parquet(train_file)

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)

    def prompt_tokens(example):
        text = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    lengths = [prompt_tokens(e) for e in training.conversations(rows, "arc", None)]
    max_length = lengths[1]
    assert lengths[0] == max_length - 1 and lengths[2] > max_length and max(lengths[3:]) < max_length - 10
    over = sum(length >= max_length for length in lengths)

    settings = {**CPU_SETTINGS, "max_length": max_length}
    output = tmp_path / "model"
    training.main(
        [
            "train",
            "--model",
            str(tiny_model),
            "--train-file",
            str(train_file),
            "--prompt-format",
            "arc",
            "--output-dir",
            str(output),
            "--work-dir",
            str(tmp_path / "work"),
            "--settings",
            json.dumps(settings),
        ]
    )
    record = json.loads((output / "training.json").read_text())
    assert record["rows_given"] == len(rows) == 20
    assert record["rows_dropped_over_max_length"] == over == 2
    assert record["examples"] == 18 and record["global_step"] == 9  # 18 rows, batch 2, one process
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "2 of 20 training rows dropped" in warnings[0], warnings

    # The row whose prompt fits is kept, cut at max_length: it trains on its one answer token.
    trainer = build_trainer(
        str(tiny_model), str(train_file), "arc", str(tmp_path / "w2"), TrainSettings.from_json(json.dumps(settings))
    )
    kept = next(e for e in trainer.train_dataset if len(e["input_ids"]) == max_length)
    assert [tokenizer.decode(i) for i, label in zip(kept["input_ids"], kept["labels"]) if label != -100] == [
        rows.loc[0, "answerKey"]
    ]


def test_a_training_setting_named_as_sft_config_names_it_reaches_sft_config():
    """A TRL hyper-parameter is one schema entry: its key passes to SFTConfig under its own name; the
    study's names go through the one mapping; a name SFTConfig lacks or one the step sets is refused."""
    from trl import SFTConfig

    settings = TrainSettings.from_json(json.dumps({**CPU_SETTINGS, "neftune_noise_alpha": 5.0}))
    arguments = settings.sft_arguments(cuda=False)
    assert arguments["neftune_noise_alpha"] == 5.0
    assert arguments["num_train_epochs"] == CPU_SETTINGS["epochs"] and "epochs" not in arguments
    assert arguments["optim"] == CPU_SETTINGS["cpu_optim"] and "cpu_optim" not in arguments
    assert arguments["data_seed"] == arguments["seed"] == CPU_SETTINGS["seed"]
    assert "system_prompt" not in arguments and "chat_template_date" not in arguments
    config = SFTConfig(output_dir="unused", use_cpu=True, **arguments)
    assert config.neftune_noise_alpha == 5.0 and config.lr_scheduler_type == CPU_SETTINGS["lr_scheduler"]
    with pytest.raises(ValueError, match=r"\['neftune_noise_alfa'\] are no fields of TRL's SFTConfig"):
        TrainSettings.from_json(json.dumps({**CPU_SETTINGS, "neftune_noise_alfa": 5.0})).sft_arguments(cuda=False)
    with pytest.raises(ValueError, match=r"\['save_strategy'\] are set by the training step itself"):
        TrainSettings.from_json(json.dumps({**CPU_SETTINGS, "save_strategy": "steps"}))
