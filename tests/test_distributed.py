"""DDP: ``python -m ftlib train`` under ``torchrun`` on CPU (gloo) matches a single process."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ftlib.core import runtime
from ftlib.core.runs import load_run
from ftlib.course import cli
from ftlib.data.records import write_jsonl
from tests.conftest import TICKETS, tiny_train_args

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nothing listens on now, for torchrun's rendezvous."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_flags(data: Path, val: Path, output: Path, batch_size: int) -> list[str]:
    """Same seed, data, order and steps for both runs; only the per-process batch differs."""
    return tiny_train_args(
        data,
        val,
        output,
        max_steps=4,
        eval_steps=2,
        batch_size=batch_size,
        eval_batch_size=4,
        data_order="sequential",
        learning_rate="1e-2",
        lora_r=8,
        max_length=512,
        seed=0,
    )


@pytest.mark.integration
def test_two_processes_train_like_one_with_the_same_global_batch(tmp_path):
    data = write_jsonl(TICKETS * 4, tmp_path / "data" / "train.jsonl")
    val = write_jsonl(TICKETS, tmp_path / "data" / "val.jsonl")
    assert cli.main(train_flags(data, val, tmp_path / "single", batch_size=4)) == 0

    port = free_port()
    env = os.environ | {
        "FTLIB_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "TQDM_DISABLE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    runs = tmp_path / "runs"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "ftlib",
        *train_flags(data, val, runs / "ddp", batch_size=2),
    ]
    finished = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert finished.stdout.count("final val loss") == 1  # the summary comes from rank 0 only

    single = json.loads((tmp_path / "single" / "history.json").read_text())
    ddp = json.loads((runs / "ddp" / "history.json").read_text())
    single_losses = [point["loss"] for point in single["train"]]
    ddp_losses = [point["loss"] for point in ddp["train"]]
    assert len(ddp_losses) == len(single_losses) == 4
    # Trainer averages the ranks' losses, each normalized by the tokens of the whole global batch.
    assert ddp_losses == pytest.approx(single_losses, rel=1e-3)
    assert [p["loss"] for p in ddp["val"]] == pytest.approx([p["loss"] for p in single["val"]], rel=1e-3)

    # One run folder, written once: no scratch or .previous folder left by a second rank.
    assert sorted(path.name for path in runs.iterdir()) == ["ddp"]
    assert list(runs.rglob("manifest.json")) == [runs / "ddp" / "manifest.json"]
    record = load_run(runs / "ddp")
    assert record.world_size == 2 and record.global_batch_size == 4
    assert load_run(tmp_path / "single").world_size == 1
    adapter_ddp = load_file(runs / "ddp" / "adapter" / "adapter_model.safetensors")
    adapter_single = load_file(tmp_path / "single" / "adapter" / "adapter_model.safetensors")
    assert adapter_ddp.keys() == adapter_single.keys()
    for name, weight in adapter_single.items():
        assert (adapter_ddp[name] - weight).abs().max() < 1e-4, name


@pytest.mark.unit
@pytest.mark.parametrize("local_rank, expected", [(None, "cuda"), ("0", "cuda:0"), ("1", "cuda:1"), ("3", "cuda:1")])
def test_each_launched_process_gets_its_own_gpu(monkeypatch, local_rank, expected):
    """Under torchrun rank r loads onto cuda:r (a 4-bit model cannot move after loading); alone, plain "cuda"."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: f"GPU {index}")
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    choice = runtime.pick_device()
    assert choice.device == expected
    assert choice.name == f"GPU {expected.removeprefix('cuda').lstrip(':') or 0}"
