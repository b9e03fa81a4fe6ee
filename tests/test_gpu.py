"""QLoRA on a CUDA GPU: a 4-bit base, adapter-only training, a falling loss, and the first losses as recorded.

Skipped without CUDA, so ``make test`` runs it unchanged on a CPU machine. The recorded losses live in
``tests/golden/qlora_tiny_losses.json``, one entry per compute dtype (bf16 on Ampere and newer, fp16 on a T4),
with the GPU and library versions that measured them. A dtype with no entry yet fails the golden test with the
measured values and the command that records them: a skip would read as "nothing to check here" and leave the
check unwritten forever, and writing the file unasked would bless whatever the first run measured, bug or not.
"""

import itertools
import json
import math
import os
from pathlib import Path

import pytest
import torch

from ftlib.core.config import TrainConfig
from ftlib.core.fileio import write_json
from ftlib.core.runtime import pick_device
from ftlib.core.tasks import SUPPORT_TICKETS
from ftlib.engine import adapters, train
from tests.conftest import TICKETS

pytestmark = [
    pytest.mark.unit,  # the tiny random model: seconds on a GPU
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: QLoRA's 4-bit kernels run there"),
]

GOLDEN = Path(__file__).parent / "golden" / "qlora_tiny_losses.json"
RECORD = "FTLIB_RECORD_GOLDEN"  # =1: write this GPU's measured losses into GOLDEN (then review and commit it)
STEPS = 6
# The losses are computed in bf16 or fp16 (8 or 11 mantissa bits: 0.4% or 0.05% per rounding); other GPUs and
# kernels round differently. 1% allows that, while a masking, scaling or optimizer bug moves a loss by far more.
TOLERANCE = 1e-2


def qlora_config() -> TrainConfig:
    """The same four tickets every step (sequential, one batch of four), so each step should lower the loss."""
    return TrainConfig(
        method="qlora",
        max_steps=STEPS,
        batch_size=4,
        eval_steps=STEPS,
        eval_batch_size=4,
        warmup_steps=0,
        learning_rate=1e-2,
        lr_scheduler="constant",
        lora_r=8,
        max_length=512,
        seed=0,
        data_order="sequential",
        save_checkpoints=False,
    )


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory):
    return train.train(
        "tiny-random-llama",
        TICKETS,
        TICKETS,
        tmp_path_factory.mktemp("gpu") / "qlora",
        config=qlora_config(),
        task=SUPPORT_TICKETS,
        device=pick_device("cuda"),
    )


def train_losses(result: train.TrainResult) -> list[float]:
    """The logged loss of each training step, in step order."""
    return [point["loss"] for point in result.history["train"]]


def test_qlora_keeps_a_4bit_base_trains_only_adapters_and_lowers_the_loss(qlora_run):
    import bitsandbytes as bnb

    losses = train_losses(qlora_run)
    assert len(losses) == STEPS and all(math.isfinite(loss) for loss in losses), losses
    assert all(later < earlier for earlier, later in itertools.pairwise(losses)), losses

    model = qlora_run.model
    four_bit = [module for module in model.modules() if isinstance(module, bnb.nn.Linear4bit)]
    layers = model.config.num_hidden_layers
    assert len(four_bit) == 7 * layers  # q, k, v, o, gate, up, down in every layer; lm_head stays unquantized
    assert all(module.weight.quant_type == "nf4" and module.weight.dtype == torch.uint8 for module in four_bit)
    assert all(module.weight.device.type == "cuda" for module in four_bit)

    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable), sorted(trainable)
    assert qlora_run.record.parameters.trainable == sum(p.numel() for p in trainable.values())


def test_first_losses_match_the_recorded_ones(qlora_run):
    device = pick_device("cuda")
    dtype = str(device.dtype).removeprefix("torch.")
    measured = train_losses(qlora_run)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get(RECORD) == "1":
        golden[dtype] = {"losses": measured, "gpu": device.name, "versions": adapters.library_versions()}
        write_json(golden, GOLDEN)
    entry = golden.get(dtype)
    if entry is None:
        pytest.fail(
            f"no recorded QLoRA losses for {dtype} in {GOLDEN.name} yet. Measured on {device.name}: {measured}. "
            f"If the test above passed (finite, falling, 4-bit base, adapters only), record and commit them:\n"
            f"  {RECORD}=1 TQDM_DISABLE=1 .venv/bin/python -m pytest tests/test_gpu.py -p no:cacheprovider\n"
            f"  git add {GOLDEN.relative_to(GOLDEN.parents[2])}",
            pytrace=False,
        )
    assert measured == pytest.approx(entry["losses"], rel=TOLERANCE), (
        f"recorded on {entry['gpu']} with {entry['versions']}; measured on {device.name} with "
        f"{adapters.library_versions()}"
    )
