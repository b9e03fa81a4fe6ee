"""Inference cost: what answering tickets costs with a tuned model's short prompt, a base model's few-shot prompt,
and a merged or unmerged adapter, measured on this machine, and labelled estimates for other hardware.

Measured (``time_generation``): wall-clock seconds, this process's CPU-seconds (every thread's) and generated
tokens of greedy answers (``ftlib.engine.inference.generate_tokens``, batched, the shared prompt prefix cached once),
turned into seconds per ticket, generated tokens per second and CPU-seconds per 1,000 tickets by arithmetic only.

Estimated (``Estimate``, never presented as measured): a dollar figure from the measured CPU-seconds and an
ASSUMED hourly price, a 7-8B model on this CPU scaled by parameter count, and a GPU from its specified memory
bandwidth and compute. Every estimate carries its formula and assumptions as text.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

from ftlib.core.config import DEFAULT_DECODING, Decoding
from ftlib.data.batches import prompt_text
from ftlib.engine.inference import decode_answer, generate_tokens

PER = 1000  # tickets in the "per 1,000 tickets" figures
# ASSUMED prices, not measured: edit them to your provider's. The order of an on-demand general-purpose cloud vCPU
# (one hyperthread) and of a data-centre GPU by the hour; they only scale the dollar estimates.
ASSUMED_VCPU_HOUR_USD = 0.04
ASSUMED_GPU_HOUR_USD = 2.0
# A 7-8B model for the estimates: Qwen2.5-7B-Instruct, the gpu profile's base (7.6e9 parameters, stored in bf16).
LARGE_MODEL = ("qwen2.5-7b-instruct", 7.6e9, 2)


@dataclass(frozen=True)
class GpuSpec:
    """A GPU's datasheet figures and the share of them a real decoder reaches (an assumption)."""

    name: str
    memory_bandwidth: float  # bytes/s, datasheet
    peak_flops: float  # dense bf16 FLOP/s, datasheet
    hour_usd: float  # ASSUMED price per hour
    efficiency: float = 0.5  # ASSUMED share of peak bandwidth and compute reached; real kernels fall short of 1


# NVIDIA A100 80GB SXM datasheet: 2,039 GB/s HBM2e, 312 TFLOP/s dense BF16 tensor cores.
A100 = GpuSpec("A100 80GB (datasheet figures)", 2.039e12, 312e12, ASSUMED_GPU_HOUR_USD)


@dataclass(frozen=True)
class Measurement:
    """One measured generation pass: what ran, on how many tickets, and the seconds and tokens it took."""

    name: str
    prompts: int
    batch_size: int
    mean_prompt_tokens: float
    generated_tokens: int  # answer tokens up to and with each EOS
    wall_seconds: float
    cpu_seconds: float  # this process's CPU time (user + system, all threads) during the pass
    threads: int

    @property
    def seconds_per_ticket(self) -> float:
        """Wall-clock seconds per ticket when tickets are answered in batches of ``batch_size``."""
        return self.wall_seconds / self.prompts

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.wall_seconds

    @property
    def generated_per_ticket(self) -> float:
        return self.generated_tokens / self.prompts

    @property
    def cpu_seconds_per_1000(self) -> float:
        return self.cpu_seconds / self.prompts * PER

    @property
    def wall_seconds_per_1000(self) -> float:
        return self.wall_seconds / self.prompts * PER

    def usd_per_1000(self, vcpu_hour_usd: float = ASSUMED_VCPU_HOUR_USD) -> float:
        """ESTIMATE: the measured CPU-seconds per 1,000 tickets at an assumed price per vCPU-hour."""
        return self.cpu_seconds_per_1000 / 3600 * vcpu_hour_usd


@dataclass(frozen=True)
class Estimate:
    """A figure for hardware or a model that was not measured here, with the formula it came from."""

    name: str
    seconds_per_1000: float
    usd_per_1000: float
    formula: str
    kind: str = "estimate"


@dataclass
class CostReport:
    """Measured passes, the assumed vCPU price, estimates, and whether merged and unmerged answers agree."""

    measurements: list[Measurement]
    estimates: list[Estimate]
    vcpu_hour_usd: float = ASSUMED_VCPU_HOUR_USD
    merged_identical: tuple[int, int] | None = None  # (identical answers, answers) of merged vs unmerged

    def rows(self) -> list[dict]:
        """Table rows: measured passes first (their dollar column marked as an estimate), then the estimates."""
        rows = [
            {
                "kind": "measured",
                "setup": m.name,
                "s/ticket": round(m.seconds_per_ticket, 3),
                "generated tokens/s": round(m.tokens_per_second, 1),
                "prompt tokens": round(m.mean_prompt_tokens, 1),
                "CPU-s per 1,000": round(m.cpu_seconds_per_1000, 1),
                "USD per 1,000": f"{m.usd_per_1000(self.vcpu_hour_usd):.4f} "
                f"(estimate: ${self.vcpu_hour_usd}/vCPU-h assumed)",
            }
            for m in self.measurements
        ]
        rows += [
            {
                "kind": "estimate",
                "setup": e.name,
                "s/ticket": round(e.seconds_per_1000 / PER, 4),
                "generated tokens/s": None,
                "prompt tokens": None,
                "CPU-s per 1,000": None,
                "USD per 1,000": f"{e.usd_per_1000:.4f} (estimate)",
                "formula": e.formula,
            }
            for e in self.estimates
        ]
        return rows

    def as_dict(self) -> dict:
        measured = [
            asdict(m)
            | {
                "seconds_per_ticket": m.seconds_per_ticket,
                "tokens_per_second": m.tokens_per_second,
                "cpu_seconds_per_1000": m.cpu_seconds_per_1000,
                "wall_seconds_per_1000": m.wall_seconds_per_1000,
                "usd_per_1000_estimate": m.usd_per_1000(self.vcpu_hour_usd),
            }
            for m in self.measurements
        ]
        return {
            "measured": measured,
            "estimates": [asdict(e) for e in self.estimates],
            "assumed_vcpu_hour_usd": self.vcpu_hour_usd,
            "merged_identical": self.merged_identical,
        }


def time_generation(
    model, tokenizer, conversations: list[list[dict]], name: str, decoding: Decoding = DEFAULT_DECODING
) -> tuple[Measurement, list[str]]:
    """Answer ``conversations`` greedily and measure the pass; returns the measurement and the answers.

    One short untimed pass first (one prompt, two tokens): the first call of a model pays one-off set-up costs
    that would otherwise land on whichever setup is timed first.
    """
    import torch

    generate_tokens(model, tokenizer, conversations[:1], Decoding(batch_size=1, max_new_tokens=2))
    prompt_tokens = [
        len(tokenizer(prompt_text(tokenizer, c), add_special_tokens=False)["input_ids"]) for c in conversations
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    ids = generate_tokens(model, tokenizer, conversations, decoding)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    measurement = Measurement(
        name,
        len(conversations),
        decoding.batch_size,
        sum(prompt_tokens) / len(prompt_tokens),
        sum(len(row) for row in ids),
        wall,
        cpu,
        torch.get_num_threads(),
    )
    return measurement, [decode_answer(tokenizer, row) for row in ids]


def merged_copy(peft_model):
    """A plain model with the adapter folded into a copy of its weights; ``peft_model`` itself is left as it is."""
    return copy.deepcopy(peft_model).merge_and_unload()


@dataclass(frozen=True)
class Spread:
    """Seconds per ticket of one setup over repeated passes: the mean and the lowest and highest pass."""

    name: str
    seconds_per_ticket: list[float]  # one value per pass, in pass order

    @property
    def mean(self) -> float:
        return sum(self.seconds_per_ticket) / len(self.seconds_per_ticket)

    @property
    def interval(self) -> tuple[float, float]:
        """The range over the passes (with 5 passes a bootstrap or t interval would claim more than they show)."""
        return min(self.seconds_per_ticket), max(self.seconds_per_ticket)


def repeated_passes(
    setups: dict[str, tuple[object, list[list[dict]]]],
    tokenizer,
    repeats: int = 5,
    decoding: Decoding = DEFAULT_DECODING,
) -> tuple[dict[str, Spread], list[dict[str, float]]]:
    """Time every setup ``repeats`` times, the order rotated each round, so that a slow spell of a shared machine
    lands on every setup in turn rather than on one.

    Args:
        setups: name -> (model, conversations), e.g. the tuned model on zero-shot prompts and the base on few-shot.

    Returns:
        Per setup, its seconds per ticket pass by pass; and per round, every setup's seconds per ticket (a ratio of
        two setups is read within a round, where both ran under the same load).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    names = list(setups)
    rounds: list[dict[str, float]] = []
    for index in range(repeats):
        order = names[index % len(names) :] + names[: index % len(names)]
        timed = {}
        for name in order:
            model, conversations = setups[name]
            measurement, _ = time_generation(model, tokenizer, conversations, name, decoding)
            timed[name] = measurement.seconds_per_ticket
        rounds.append({name: timed[name] for name in names})
    return {name: Spread(name, [r[name] for r in rounds]) for name in names}, rounds


def ratio_range(rounds: list[dict[str, float]], numerator: str, denominator: str) -> tuple[float, float, float]:
    """(mean, lowest, highest) of ``numerator / denominator`` over the rounds of ``repeated_passes``."""
    ratios = [r[numerator] / r[denominator] for r in rounds]
    return sum(ratios) / len(ratios), min(ratios), max(ratios)


def cpu_scaled_estimate(measurement: Measurement, measured_parameters: float, model=LARGE_MODEL) -> Estimate:
    """ESTIMATE: ``measurement`` on this CPU for a model of ``model[1]`` parameters, scaled by the parameter ratio.

    Greedy decoding on a CPU reads every weight once per step, so its time grows about with the weights' size;
    the cache, a 7B model's 15 GB of bf16 weights needing the memory, and the measured model's fp32 are ignored.
    """
    name, parameters, _ = model
    ratio = parameters / measured_parameters
    seconds = measurement.cpu_seconds_per_1000 * ratio
    return Estimate(
        f"{name} on this CPU, {measurement.name}",
        seconds,
        seconds / 3600 * ASSUMED_VCPU_HOUR_USD,
        f"measured {measurement.cpu_seconds_per_1000:.1f} CPU-s per 1,000 x ({parameters:.3g} / "
        f"{measured_parameters:.3g} parameters = {ratio:.1f}); x ${ASSUMED_VCPU_HOUR_USD}/vCPU-h (assumed)",
    )


def gpu_estimate(measurement: Measurement, gpu: GpuSpec = A100, model=LARGE_MODEL) -> Estimate:
    """ESTIMATE: the same tickets (prompt and answer lengths as measured, same batch) on ``gpu`` for ``model``.

    Decoding is bound by memory bandwidth: each step reads the weights once for the whole batch, so a ticket's
    answer takes ``generated tokens x weight bytes / (bandwidth x efficiency) / batch``. The prompt is bound by
    compute: ``2 x parameters x prompt tokens / (peak FLOP/s x efficiency)``. Cache reads, the shared prefix and
    launch overheads are ignored.
    """
    name, parameters, bytes_per_parameter = model
    weight_bytes = parameters * bytes_per_parameter
    decode = measurement.generated_per_ticket * weight_bytes / (gpu.memory_bandwidth * gpu.efficiency)
    decode /= measurement.batch_size
    prefill = 2 * parameters * measurement.mean_prompt_tokens / (gpu.peak_flops * gpu.efficiency)
    seconds = (decode + prefill) * PER
    return Estimate(
        f"{name} on {gpu.name}, {measurement.name}",
        seconds,
        seconds / 3600 * gpu.hour_usd,
        f"per ticket: {measurement.generated_per_ticket:.1f} generated tokens x {weight_bytes / 1e9:.1f} GB / "
        f"({gpu.memory_bandwidth / 1e12:.2f} TB/s x {gpu.efficiency} assumed efficiency) / batch "
        f"{measurement.batch_size} + 2 x {parameters:.3g} x {measurement.mean_prompt_tokens:.0f} prompt tokens / "
        f"({gpu.peak_flops / 1e12:.0f} TFLOP/s x {gpu.efficiency}); x ${gpu.hour_usd}/GPU-h (assumed)",
    )


def measure(
    tuned_model,
    base_model,
    tokenizer,
    records: list[dict],
    task,
    few_shot: list[dict],
    decoding: Decoding = DEFAULT_DECODING,
    measured_parameters: float | None = None,
    merged=None,
) -> CostReport:
    """The notebook's comparison on ``records``: (a) the tuned model, zero-shot; (b) the base model with the
    ``few_shot`` solved examples in every prompt; (c) the tuned adapter merged into its weights (``merged``, or
    ``merged_copy(tuned_model)``) on the zero-shot prompt; then estimates from (a) and (b).

    ``measured_parameters``: the base model's parameter count (default: counted on ``base_model``).
    """
    from ftlib.engine.models import count_parameters

    zero_shot = [task.prompt_messages(r) for r in records]
    tuned, tuned_answers = time_generation(
        tuned_model, tokenizer, zero_shot, "tuned, zero-shot (adapter unmerged)", decoding
    )
    few = [task.prompt_messages(r, few_shot) for r in records]
    base, _ = time_generation(base_model, tokenizer, few, f"base, {len(few_shot)}-shot", decoding)
    merged = merged if merged is not None else merged_copy(tuned_model)
    folded, merged_answers = time_generation(
        merged, tokenizer, zero_shot, "tuned, zero-shot (adapter merged)", decoding
    )
    parameters = measured_parameters or count_parameters(base_model).total
    estimates = [cpu_scaled_estimate(m, parameters) for m in (tuned, base)] + [gpu_estimate(m) for m in (tuned, base)]
    identical = sum(a == b for a, b in zip(tuned_answers, merged_answers))
    return CostReport([tuned, base, folded], estimates, merged_identical=(identical, len(records)))
