"""Training across machines, on the tiny model with real accelerate, DeepSpeed ZeRO-3 (gloo) and
zero_to_fp32: two launchers on this host, machine ranks 0 and 1, each starting one rank through the
same node launcher a job across SLURM nodes runs (workflow_scripts/lib/launcher.py), give the model a
one-machine run of the same seed gives. The real two-node SLURM job is in test_cluster.py."""

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.support.workflow import REPO, training_settings
from workflow_scripts.lib import launcher
from workflow_scripts.lib.checkpoints import COMPLETE_MARKER, STOPPED_FOR_RESUME, complete_checkpoints
from workflow_scripts.steps import conversion

SETTINGS = training_settings(
    epochs=1, bf16=False, optim="adamw_torch", learning_rate=1e-3, max_length=512, use_liger_kernel=False
)


def training_arguments(model, train_file, folder) -> list[str]:
    """The arguments every mode of the training step shares: what to train, on what, where to."""
    return [
        "--model",
        str(model),
        "--train-file",
        str(train_file),
        "--prompt-format",
        "arc",
        "--output-dir",
        str(folder / "zero"),
        "--work-dir",
        str(folder / "work"),
        "--checkpoint-minutes",
        "0.00001",  # a checkpoint after every step but the last: each one a collective across machines
        "--settings",
        json.dumps(SETTINGS),
        "--accelerate-config",
        str(REPO / "config/accelerate/zero3_cpu.yaml"),
        "--num-processes",
        "2",
    ]


def step(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "workflow_scripts.steps.training", *arguments]


def probe_logits(zero_dir, hf_dir):
    """The converted model's logits on the probe input, and the conversion's own check of them."""
    from transformers import AutoModelForCausalLM

    report = conversion.convert(zero_dir, hf_dir, dtype="float32", max_shard_size="5GB")
    probe = torch.load(zero_dir / "probe.pt")
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(hf_dir).eval()(input_ids=probe["input_ids"]).logits
    return logits, report


def run_two_machines(model, train_file, folder, *extra: str) -> dict[str, tuple[int, str]]:
    """Two node launchers on this host, as srun starts them on two nodes: {node: (exit status, log)}."""
    port = launcher.free_port()
    nodes = ["machine-a", "machine-b"]
    started = []
    for node in nodes:
        command = step(
            "node",
            *training_arguments(model, train_file, folder),
            *extra,
            "--nodes",
            "2",
            "--node-order",
            ",".join(nodes),
            "--main-address",
            "127.0.0.1",
            "--main-port",
            str(port),
        )
        # Each launcher finds its machine rank as it does under srun: its node's name in the order.
        env = {**os.environ, "SLURMD_NODENAME": node}
        log = folder / f"{node}-{len(list(folder.glob(f'{node}-*.log')))}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as handle:
            started.append(
                (node, log, subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT))
            )
    return {node: (process.wait(timeout=800), log.read_text()) for node, log, process in started}


@pytest.fixture(scope="module")
def one_machine(tiny_model, arc_bins, tmp_path_factory):
    """The same training on one machine of two ranks: the reference."""
    folder = tmp_path_factory.mktemp("one-machine")
    subprocess.run(
        step("launch", *training_arguments(tiny_model, arc_bins / "bin-1.parquet", folder)),
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    logits, _ = probe_logits(folder / "zero", folder / "hf")
    return json.loads((folder / "zero" / "training.json").read_text()), logits


def test_two_machines_train_the_model_one_machine_trains(tiny_model, arc_bins, tmp_path, one_machine):
    alone, alone_logits = one_machine
    two = tmp_path / "two-machines"
    ended = run_two_machines(tiny_model, arc_bins / "bin-1.parquet", two)
    assert [status for status, _ in ended.values()] == [0, 0], ended
    assert "node 0 of 2: 1 ranks" in ended["machine-a"][1] and "node 1 of 2: 1 ranks" in ended["machine-b"][1]

    record = json.loads((two / "zero" / "training.json").read_text())
    assert record["world_size"] == alone["world_size"] == 2 and record["backend"] == "gloo"
    assert record["global_step"] == alone["global_step"] == 5  # 20 rows / (2 ranks x batch 2)
    # Every checkpoint counted once both machines' ranks had written it; the last stays for a resume.
    assert [c["step"] for c in record["checkpoints"]] == [1, 2, 3, 4]
    assert [p.name for p in (two / "work").glob("checkpoint-*") if (p / COMPLETE_MARKER).exists()] == ["checkpoint-4"]
    shards = sorted(p.name for p in (two / "zero").glob("global_step*/*model_states.pt"))
    assert [name.split("_")[3] for name in shards] == ["0", "1"], shards  # one ZeRO-3 shard per rank
    losses = [row["loss"] for row in record["loss_per_step"]]
    assert losses == pytest.approx([row["loss"] for row in alone["loss_per_step"]], abs=1e-5)

    logits, report = probe_logits(two / "zero", two / "hf")
    assert report["probe_max_abs_diff"] <= 1e-5
    difference = (logits - alone_logits).abs().max().item()
    print(f"two machines vs one: probe logits differ by at most {difference:.3g}")
    torch.testing.assert_close(logits, alone_logits, atol=1e-5, rtol=0)


def test_two_machines_stopped_half_way_resume_from_the_checkpoint_both_wrote(
    tiny_model, arc_bins, tmp_path, one_machine
):
    """The resume drill across machines: both stop after the half-way checkpoint; the next
    attempt, told which checkpoint to resume from (the job's process decides it once, launch mode),
    finishes the schedule and ends with the model an uninterrupted run trains."""
    alone, alone_logits = one_machine
    two = tmp_path / "two-machines"
    first = run_two_machines(tiny_model, arc_bins / "bin-1.parquet", two, "--stop-halfway", "1")
    # Each rank exits with STOPPED_FOR_RESUME; the launchers fail the attempt, as a killed job fails.
    assert all(status != 0 for status, _ in first.values()), first
    assert "stopped on purpose after checkpoint-3" in first["machine-a"][1], first["machine-a"][1][-3000:]
    assert f"(exitcode: {STOPPED_FOR_RESUME})" in first["machine-b"][1], first["machine-b"][1][-3000:]
    (checkpoint,) = complete_checkpoints(two / "work")
    assert checkpoint.name == "checkpoint-3"  # ceil(5 / 2)
    second = run_two_machines(tiny_model, arc_bins / "bin-1.parquet", two, "--resume-from", str(checkpoint))
    assert [status for status, _ in second.values()] == [0, 0], second

    record = json.loads((two / "zero" / "training.json").read_text())
    assert (record["resumed_from_step"], record["global_step"]) == (3, 5)
    # The first attempt's checkpoints are in the history the resumed one carried on.
    assert [(c["step"], c["reason"]) for c in record["checkpoints"]][:3] == [
        (1, "interval"),
        (2, "interval"),
        (3, "resume drill"),
    ]
    logits, _ = probe_logits(two / "zero", two / "hf")
    difference = (logits - alone_logits).abs().max().item()
    print(f"two machines, stopped and resumed, vs one uninterrupted: probe logits differ by at most {difference:.3g}")
    torch.testing.assert_close(logits, alone_logits, atol=1e-4, rtol=0)
