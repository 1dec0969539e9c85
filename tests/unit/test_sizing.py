"""Job sizing (workflow_scripts/lib/sizing.py): parameter counts, the work read from disk, the request
policy, and measured rates replacing the assumptions."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import yaml

from tests.support.workflow import REPO
from workflow_scripts.lib import sizing

# The architecture of each paper model (its config.json on the hub) and the count on its model card.
PAPER_MODELS = {
    "qwen2.5-1.5b-instruct": (
        dict(
            model_type="qwen2",
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            vocab_size=151936,
            tie_word_embeddings=True,
        ),
        1_543_714_304,
    ),
    "qwen2.5-3b-instruct": (
        dict(
            model_type="qwen2",
            hidden_size=2048,
            intermediate_size=11008,
            num_hidden_layers=36,
            num_attention_heads=16,
            num_key_value_heads=2,
            vocab_size=151936,
            tie_word_embeddings=True,
        ),
        3_085_938_688,
    ),
    "qwen2.5-7b-instruct": (
        dict(
            model_type="qwen2",
            hidden_size=3584,
            intermediate_size=18944,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            vocab_size=152064,
            tie_word_embeddings=False,
        ),
        7_615_616_512,
    ),
    "qwen2.5-14b-instruct": (
        dict(
            model_type="qwen2",
            hidden_size=5120,
            intermediate_size=13824,
            num_hidden_layers=48,
            num_attention_heads=40,
            num_key_value_heads=8,
            vocab_size=152064,
            tie_word_embeddings=False,
        ),
        14_770_033_664,
    ),
    "llama-3.2-1b-instruct": (
        dict(
            model_type="llama",
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            head_dim=64,
            tie_word_embeddings=True,
        ),
        1_235_814_400,
    ),
    "llama-3.2-3b-instruct": (
        dict(
            model_type="llama",
            hidden_size=3072,
            intermediate_size=8192,
            num_hidden_layers=28,
            num_attention_heads=24,
            num_key_value_heads=8,
            vocab_size=128256,
            head_dim=128,
            tie_word_embeddings=True,
        ),
        3_212_749_824,
    ),
    "llama-3.1-8b-instruct": (
        dict(
            model_type="llama",
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            tie_word_embeddings=False,
        ),
        8_030_261_248,
    ),
}


@pytest.mark.parametrize("name", sorted(PAPER_MODELS))
def test_parameter_count_is_what_transformers_builds_and_the_model_card_says(name):
    architecture, card = PAPER_MODELS[name]
    assert sizing.parameter_count(architecture) == card
    assert sizing._meta_device_count(architecture) == card  # the modules transformers builds on the meta device


def test_the_paper_config_declares_those_counts():
    models = yaml.safe_load((REPO / "config/config.yaml").read_text())["models"]
    assert {name: entry["parameters"] for name, entry in models.items()} == {n: c for n, (_, c) in PAPER_MODELS.items()}


def test_rows_come_from_the_bin_file_once_it_exists(tmp_path):
    path = tmp_path / "bin-0.parquet"
    assert sizing.parquet_rows(str(path)) is None
    assert sizing.expected_rows("mmlu_pro", 10) == 1203 and sizing.expected_rows("arc", 10, share=0.8) == 94
    pd.DataFrame({"x": range(37)}).to_parquet(path)
    assert sizing.parquet_rows(str(path)) == 37


@pytest.mark.parametrize(
    "task, expected",
    [
        ("cross_difficulty_arc", ("multiple_choice", 256)),
        ("cross_difficulty_math", ("generate_until", 4096)),
        ("cross_difficulty_gsm8k", ("generate_until", 256)),
        ("cross_difficulty_bbh", ("generate_until", 256)),
        ("cross_difficulty_mmlu_pro", ("generate_until", 2048)),
    ],
)
def test_generation_limits_are_read_from_the_task_files(task, expected):
    assert sizing.task_output(str(REPO / "tasks" / f"{task}.yaml")) == expected


def test_a_request_is_the_estimate_with_headroom_and_retries_stop_at_the_partition_limit():
    assert sizing.runtime_request(60, 1, 1440) == 4  # 1 min + 3 min headroom
    assert sizing.runtime_request(3600, 1, 1440) == 90  # 60 min + 50 %
    assert [sizing.runtime_request(3600, k, 200) for k in (1, 2, 3)] == [90, 180, 200]
    assert sizing.runtime_request(10 * 3600, 1, 480) == 480  # longer than the partition allows: capped
    assert [sizing.memory_request(40e9, k, 120_000) for k in (1, 2, 3)] == [50_000, 75_000, 100_000]
    assert sizing.memory_request(400e9, 1, 120_000) == 120_000


def test_work_scales_the_estimate():
    def train(**change):
        work = dict(
            parameters=1_235_814_400,
            examples=132,
            epochs=5,
            per_device_batch_size=2,
            gradient_accumulation_steps=1,
            gradient_checkpointing=False,
            ranks=4,
            tokens_per_example=260,
            checkpoint_minutes=30,
        )
        return sizing.train_estimate(sizing.TrainWork(**{**work, **change}))

    small, big = train(), train(parameters=14_770_033_664)
    assert train().parts["steps"] == 5 * math.ceil(33 / 2) == 85  # 132 rows over 4 ranks, batch 2
    assert big.seconds > 2 * small.seconds and big.memory_bytes > 2 * small.memory_bytes
    assert big.output_bytes == 6 * 14_770_033_664  # the ZeRO state: fp32 masters + 8-bit moments
    assert train(examples=1320).parts["work_s"] == pytest.approx(
        10 * small.parts["work_s"], rel=0.05
    )  # steps round up per rank
    assert train(gradient_checkpointing=True).parts["work_s"] > small.parts["work_s"]
    assert small.parts["checkpoints"] == 0  # minutes of work, a checkpoint every 30: none
    assert train(examples=200_000, checkpoint_minutes=1).parts["checkpoints"] > 10
    assert train(examples=200_000, checkpoint_minutes=0).parts["checkpoints"] == 0

    convert = sizing.convert_estimate(14_770_033_664, 2)
    assert convert.memory_bytes == pytest.approx(2e9 + 4.5 * 14_770_033_664)  # about twice the bf16 model
    assert convert.output_bytes == 2 * 14_770_033_664

    def cell(**change):
        work = dict(
            parameters=7_615_616_512,
            questions=132,
            prompt_format="gsm8k",
            output_type="generate_until",
            max_gen_toks=256,
            trained=True,
        )
        return sizing.bin_estimate(sizing.EvalWork(**{**work, **change}))

    assert cell(questions=1320).parts["generation_s"] > cell().parts["generation_s"]
    assert cell(trained=False).seconds > cell().seconds  # the base model writes longer answers, one to the limit
    assert cell(trained=False, max_gen_toks=4096).seconds > cell(trained=False).seconds
    assert cell().parts["startup_s"] == sizing.evaluation_startup_s(7_615_616_512)


def write_training_run(results, model, dataset, record, seconds):
    hf = results / "models" / model / dataset / "train-0" / "hf"
    hf.mkdir(parents=True)
    (hf / "training.json").write_text(json.dumps(record))
    bench = results / "benchmarks" / "train" / model / dataset
    bench.mkdir(parents=True)
    (bench / "train-0.tsv").write_text(f"s\th:m:s\tmax_rss\tmax_pss\n{seconds}\t0:00:00\t90000\t60000\n")


def test_measured_rates_replace_the_assumptions_for_the_nearest_model_size(tmp_path):
    results = tmp_path / "results"
    settings = {"per_device_batch_size": 2, "gradient_accumulation_steps": 1, "gradient_checkpointing": False}
    record = {
        "parameters": 1_235_814_400,
        "examples": 132,
        "epochs": 5,
        "tokens_seen": 132 * 5 * 300.0,
        "world_size": 4,
        "settings": settings,
        "train_runtime_s": 60.0,
        "checkpoints": [],
    }
    write_training_run(results, "llama-1b", "gsm8k", record, seconds=200.0)
    calibration = sizing.Calibration.measure(str(results), {"gsm8k": "gsm8k"}, str(REPO / "tasks"))
    assert calibration.tokens("gsm8k", 260) == 300  # measured tokens per example replace the shape's
    assert calibration.tokens("arc", 142) == 142

    work = sizing.TrainWork(1_235_814_400, 132, 5, 2, 1, False, 4, 300.0, 30)
    assumed, measured = sizing.train_estimate(work), sizing.train_estimate(work, calibration)
    # The measured job itself: its training time and its whole job time, as the benchmark saw them.
    assert measured.parts["work_s"] == pytest.approx(60.0)
    assert measured.seconds == pytest.approx(200.0)
    assert measured.memory_bytes == pytest.approx(60000e6)  # PSS: pages the ranks share count once
    assert assumed.seconds != pytest.approx(measured.seconds)
    # Another size takes the nearest measured model's factor; a resumed run measures nothing.
    other = sizing.TrainWork(14_770_033_664, 132, 5, 2, 1, False, 4, 300.0, 30)
    factor = 60.0 / assumed.parts["work_s"]
    assert sizing.train_estimate(other, calibration).parts["work_s"] == pytest.approx(
        factor * sizing.train_estimate(other).parts["work_s"]
    )
    write_training_run(
        results,
        "llama-3b",
        "gsm8k",
        {**record, "parameters": 3_212_749_824, "resumed_from_step": 40, "train_runtime_s": 5.0},
        seconds=10.0,
    )
    again = sizing.Calibration.measure(str(results), {"gsm8k": "gsm8k"}, str(REPO / "tasks"))
    assert again.measured_jobs["train_work"] == 1
