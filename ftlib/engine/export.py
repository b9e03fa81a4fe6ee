"""Shipping a trained run: merge its adapter, write a GGUF file and an Ollama Modelfile, and check parity.

Export is where fine-tuned models most often break without a sound: the merged or GGUF model answers
differently from the adapter it came from, or loses its chat template. ``ship`` does the whole job and checks
each hand-over, in fp32:

1. adapter -> merged: ``ftlib.engine.adapters.merge_and_export`` folds the adapter into its full-precision base; the
   logits of the adapter model and of the merged model (reloaded from disk) are compared on the prompts, and
   their greedy answers must be identical;
2. merged -> GGUF: ``write_gguf`` writes the merged Llama model with its tokenizer (byte-level BPE vocabulary,
   merges, special tokens) and its chat template under llama.cpp's names; the file is reloaded with
   ``transformers`` (``from_pretrained(folder, gguf_file=...)``, the reverse of ``ftlib.engine.models``'s reading)
   and its logits, greedy answers, chat-template rendering and prompt tokens are compared with the merged model.

``ShipReport.rows()`` is the table a lesson shows; ``ShipReport.write`` the JSON the command line leaves. Only
the Llama architecture (SmolLM2, Llama 3, ...) is written; any other is refused by name before any work.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ftlib.core.config import DEFAULT_DECODING, Decoding
from ftlib.core.fileio import write_json, write_text
from ftlib.core.runs import load_run
from ftlib.engine.gguf import (
    GGUF_DTYPES,
    MODELFILE_NAME,
    check_architecture,
    load_gguf,
    modelfile_text,
    write_gguf,
)

if TYPE_CHECKING:
    from ftlib.core.runtime import DeviceChoice
    from ftlib.core.tasks import Task

GGUF_NAME = "model.gguf"
MERGED_NAME = "merged"
REPORT_NAME = "export_report.json"

# Logit tolerances (max |difference| over every prompt position and vocabulary entry, fp32 models).
# Adapter -> merged: the adapter computes W x + s B (A x), the merged model (W + s B A) x; the same products
# summed in another order differ by fp32 rounding (~1e-7 relative) per layer, which 30 layers and logits of
# size ~20 grow to about 1e-4 (measured on SmolLM2-135M: 1.2e-4 with a 3-step smoke adapter on 20 tickets,
# 9.2e-5 with random B matrices). 1e-3 leaves eight times that, while a wrong merge (a layer left out, a
# wrong scale) moves logits by tenths or more (the smoke adapter itself moves them by up to 4.5).
MERGE_TOLERANCE = 1e-3
# Merged -> GGUF in F32: the weights are copied bit for bit and the Q/K permutation is undone exactly
# (measured difference: 0.0 on SmolLM2-135M and on the tests' tiny model); the merge's bound is kept.
# F16 keeps 11 significant bits per weight: measured 0.060 on SmolLM2-135M (20 tickets), so 0.25 bounds it
# with room; but F16 changed 1 greedy answer of those 20, which is why F32 is the default.
GGUF_TOLERANCE = {"f32": 1e-3, "f16": 0.25}

DEFAULT_PROMPTS = (
    "Say hello in one short sentence.",
    "List three colours.",
    "What is 2 + 3?",
)


@dataclass(frozen=True)
class StageParity:
    """One hand-over (adapter -> merged, or merged -> GGUF): logits and greedy answers compared."""

    stage: str
    prompts: int
    positions: int  # prompt token positions whose logits were compared
    max_abs_logit_diff: float
    tolerance: float
    answers_compared: int
    differing_answers: tuple[str, ...]  # ids of the records whose greedy answers differ

    @property
    def logits_ok(self) -> bool:
        return self.max_abs_logit_diff <= self.tolerance

    @property
    def ok(self) -> bool:
        return self.logits_ok and not self.differing_answers


@dataclass(frozen=True)
class TemplateParity:
    """Does the GGUF's tokenizer render and tokenize the prompts as the merged model's tokenizer does?"""

    prompts: int
    template_in_file: bool  # ``tokenizer.chat_template`` came back from the GGUF
    differing_renderings: tuple[str, ...]  # ids whose ``apply_chat_template`` text differs
    differing_tokens: tuple[str, ...]  # ids whose prompt token ids differ

    @property
    def ok(self) -> bool:
        return self.template_in_file and not self.differing_renderings and not self.differing_tokens


@dataclass(frozen=True)
class ShipReport:
    """What ``ship`` wrote and how well each exported model agrees with the one before it."""

    run: str
    base_model: str
    method: str
    merged_dir: str
    gguf: str
    gguf_dtype: str
    gguf_bytes: int
    modelfile: str | None
    merge: StageParity | None  # None for a full fine-tune: there is no adapter to merge
    gguf_parity: StageParity
    template: TemplateParity
    seconds: dict[str, float]

    @property
    def ok(self) -> bool:
        return (self.merge is None or self.merge.ok) and self.gguf_parity.ok and self.template.ok

    def rows(self) -> list[dict]:
        """One row per check, for a table: what was compared, the figure, the bound and the verdict."""
        rows = []
        for stage in (self.merge, self.gguf_parity):
            if stage is None:
                continue
            rows.append(
                {
                    "check": f"{stage.stage}: logits",
                    "result": f"max |diff| {stage.max_abs_logit_diff:.2e} over {stage.positions} positions",
                    "bound": f"<= {stage.tolerance:g}",
                    "ok": stage.logits_ok,
                }
            )
            rows.append(
                {
                    "check": f"{stage.stage}: greedy answers",
                    "result": f"{stage.answers_compared - len(stage.differing_answers)}/{stage.answers_compared} "
                    "identical"
                    + (f" (differ: {', '.join(stage.differing_answers)})" if stage.differing_answers else ""),
                    "bound": "all identical",
                    "ok": not stage.differing_answers,
                }
            )
        template = self.template
        differ = sorted(set(template.differing_renderings) | set(template.differing_tokens))
        rows.append(
            {
                "check": "GGUF: chat template and prompt tokens",
                "result": ("template in file" if template.template_in_file else "NO template in file")
                + f", {template.prompts - len(differ)}/{template.prompts} prompts rendered and tokenized alike"
                + (f" (differ: {', '.join(differ)})" if differ else ""),
                "bound": "all identical",
                "ok": template.ok,
            }
        )
        return rows

    def to_dict(self) -> dict:
        return asdict(self) | {"ok": self.ok}

    def write(self, path: str | Path) -> Path:
        """Write the report as JSON, atomically."""
        return write_json(self.to_dict(), path)


# --- checks ---------------------------------------------------------------------------------------------


def _prompt_ids(tokenizer, conversation: list[dict]) -> list[int]:
    from ftlib.data.batches import prompt_text

    return tokenizer(prompt_text(tokenizer, conversation), add_special_tokens=False)["input_ids"]


@torch.no_grad()
def max_logit_difference(model_a, model_b, token_ids: list[list[int]]) -> tuple[float, int]:
    """The largest |logit_a - logit_b| over every position of every row (one row at a time: no padding).

    Returns:
        ``(max difference, positions compared)``.
    """
    model_a.eval()
    model_b.eval()
    worst, positions = 0.0, 0
    for ids in token_ids:
        inputs = torch.tensor([ids])
        logits_a = model_a(input_ids=inputs.to(model_a.device)).logits.float().cpu()
        logits_b = model_b(input_ids=inputs.to(model_b.device)).logits.float().cpu()
        worst = max(worst, float((logits_a - logits_b).abs().max()))
        positions += len(ids)
    return worst, positions


def compare_stage(
    stage: str,
    model_a,
    tokenizer_a,
    model_b,
    tokenizer_b,
    conversations: list[list[dict]],
    ids: list[str],
    tolerance: float,
    decoding: Decoding = DEFAULT_DECODING,
    answers_a: list[str] | None = None,
) -> tuple[StageParity, list[str]]:
    """Logits (on ``tokenizer_a``'s prompt tokens, fed to both) and greedy answers (each model with its own
    tokenizer) of two models on the same conversations.

    Returns:
        ``(parity, answers of model_b)``; pass ``answers_a`` when model_a's answers are already known.
    """
    from ftlib.engine.inference import generate

    rows = [_prompt_ids(tokenizer_a, conversation) for conversation in conversations]
    worst, positions = max_logit_difference(model_a, model_b, rows)
    if answers_a is None:
        answers_a = generate(model_a, tokenizer_a, conversations, decoding)
    answers_b = generate(model_b, tokenizer_b, conversations, decoding)
    differing = tuple(i for i, a, b in zip(ids, answers_a, answers_b) if a != b)
    parity = StageParity(stage, len(rows), positions, worst, tolerance, len(conversations), differing)
    return parity, answers_b


def compare_templates(tokenizer_a, tokenizer_b, conversations: list[list[dict]], ids: list[str]) -> TemplateParity:
    """Render and tokenize every prompt with both tokenizers; name the prompts where they disagree."""
    from ftlib.data.batches import prompt_text

    if not tokenizer_b.chat_template:
        return TemplateParity(len(conversations), False, tuple(ids), tuple(ids))
    renderings, tokens = [], []
    for i, conversation in zip(ids, conversations):
        text_a, text_b = prompt_text(tokenizer_a, conversation), prompt_text(tokenizer_b, conversation)
        if text_a != text_b:
            renderings.append(i)
        if (
            tokenizer_a(text_a, add_special_tokens=False)["input_ids"]
            != tokenizer_b(text_a, add_special_tokens=False)["input_ids"]
        ):
            tokens.append(i)
    return TemplateParity(len(conversations), True, tuple(renderings), tuple(tokens))


# --- GGUF -----------------------------------------------------------------------------------------------


# --- Modelfile ------------------------------------------------------------------------------------------


# --- the whole job --------------------------------------------------------------------------------------


def conversations_for(records: list[dict] | None, task: Task | None) -> tuple[list[list[dict]], list[str]]:
    """The prompts the checks run on, and their ids: the records' task prompts, else a few fixed prompts."""
    if records:
        if task is None:
            raise ValueError("records were given without a task: the task turns a record into a prompt")
        ids = [str(record.get("id", f"#{index}")) for index, record in enumerate(records, 1)]
        return [task.prompt_messages(record) for record in records], ids
    system = [{"role": "system", "content": task.instruction}] if task else []
    conversations = [[*system, {"role": "user", "content": prompt}] for prompt in DEFAULT_PROMPTS]
    return conversations, [f"default-{index}" for index in range(1, len(DEFAULT_PROMPTS) + 1)]


def _empty_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file: --output must be a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty: choose a new folder (or pass overwrite=True / --overwrite)")


def _checked_before_work(run: Path, out: Path, dtype: str, source: str, overwrite: bool):
    """The run's record, once everything that can refuse the job has passed: before any model loads."""
    from transformers import AutoConfig

    from ftlib.engine.models import resolve_model_source

    record = load_run(run)
    if dtype not in GGUF_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(GGUF_DTYPES)}, not {dtype!r}")
    weights = run / record.weights_folder
    base_location = weights if record.method == "full" else resolve_model_source(record.base_model, source)
    check_architecture(AutoConfig.from_pretrained(base_location))
    _empty_output(out, overwrite)
    return record


def ship(
    run: str | Path,
    out: str | Path,
    records: list[dict] | None = None,
    task: Task | None = None,
    dtype: str = "f32",
    decoding: Decoding = DEFAULT_DECODING,
    source: str = "auto",
    overwrite: bool = False,
    device: DeviceChoice | None = None,
) -> ShipReport:
    """Merge a run's adapter, write ``model.gguf`` and a ``Modelfile`` into ``out``, and check both hand-overs.

    Args:
        run: a LoRA/QLoRA run folder (manifest.json + adapter/), or a full fine-tune's (its model/ is exported
            as it is, and ``merge`` is None). A QLoRA adapter is compared on its base in fp32, as it is merged:
            the check is the merge's, not the gap between the 4-bit base it trained on and full precision.
        out: a new or empty folder; gets ``merged/``, ``model.gguf``, ``Modelfile`` and ``export_report.json``.
        records: the prompts to compare on (e.g. the task's test records); None: a few fixed prompts.
        task: turns records into prompts; its instruction is the Modelfile's SYSTEM.
        dtype: the GGUF's weights, "f32" or "f16".
        decoding: the greedy answers compared at each hand-over.
        device: where the checks run; always in fp32 (default: the CPU).

    Raises:
        ftlib.core.runs.ManifestError: ``run`` is no readable run folder.
        UnsupportedModel: the base is not a Llama model (named), before anything is written.
        FileExistsError: ``out`` is not empty and ``overwrite`` is False.
    """
    from ftlib.core.runtime import DeviceChoice, pick_device
    from ftlib.engine.models import load_model

    started = time.perf_counter()
    run, out = Path(run), Path(out)
    record = _checked_before_work(run, out, dtype, source, overwrite)
    weights = run / record.weights_folder
    conversations, ids = conversations_for(records, task)
    chosen = device or pick_device("cpu")
    fp32 = DeviceChoice(chosen.device, torch.float32, chosen.name)
    seconds: dict[str, float] = {}
    prompts = (conversations, ids, decoding)

    # 1. adapter -> merged (a full fine-tune is its own merged model)
    if record.method == "full":
        merged_dir, merge, answers = weights, None, None
        merged, tokenizer = load_model(str(merged_dir), device=fp32)
    else:
        merged_dir, merged, tokenizer, merge, answers = _merge_stage(
            record, weights, out, fp32, source, prompts, seconds
        )

    # 2. merged -> GGUF, then the Modelfile beside it
    name = f"{run.name} ({record.base_model})"
    gguf_path, reloaded_tokenizer, gguf_parity, template = _gguf_stage(
        merged, tokenizer, out, dtype, name, prompts, answers, seconds
    )
    modelfile = write_text(
        modelfile_text(GGUF_NAME, reloaded_tokenizer, task.instruction if task else None), out / MODELFILE_NAME
    )
    seconds["total"] = time.perf_counter() - started
    report = ShipReport(
        run=str(run),
        base_model=record.base_model,
        method=record.method,
        merged_dir=str(merged_dir),
        gguf=str(gguf_path),
        gguf_dtype=dtype,
        gguf_bytes=gguf_path.stat().st_size,
        modelfile=str(modelfile),
        merge=merge,
        gguf_parity=gguf_parity,
        template=template,
        seconds={key: round(value, 2) for key, value in seconds.items()},
    )
    report.write(out / REPORT_NAME)
    return report


def _merge_stage(record, weights: Path, out: Path, fp32, source: str, prompts, seconds: dict[str, float]):
    """Merge the adapter into its fp32 base under ``out``, reload it, and compare it with base + adapter.

    Returns:
        ``(merged folder, merged model, its tokenizer, StageParity, the adapter model's answers)``.
    """
    from ftlib.core.runtime import release_memory
    from ftlib.engine.adapters import load_adapter, merge_and_export
    from ftlib.engine.models import load_model

    conversations, ids, decoding = prompts
    clock = time.perf_counter()
    merged_dir = merge_and_export(record.base_model, weights, out / MERGED_NAME, device=fp32, source=source)
    seconds["merge"] = time.perf_counter() - clock
    merged, tokenizer = load_model(str(merged_dir), device=fp32)
    clock = time.perf_counter()
    adapter_model, adapter_tokenizer = load_adapter(record.base_model, weights, device=fp32, source=source)
    merge, answers = compare_stage(
        "adapter -> merged",
        adapter_model,
        adapter_tokenizer,
        merged,
        tokenizer,
        conversations,
        ids,
        MERGE_TOLERANCE,
        decoding,
    )
    del adapter_model
    release_memory()
    seconds["merge parity"] = time.perf_counter() - clock
    return merged_dir, merged, tokenizer, merge, answers


def _gguf_stage(merged, tokenizer, out: Path, dtype: str, name: str, prompts, answers, seconds: dict[str, float]):
    """Write the merged model as GGUF, reload it with ``transformers`` and compare it with the merged model.

    Returns:
        ``(GGUF path, the reloaded tokenizer, StageParity, TemplateParity)``.
    """
    conversations, ids, decoding = prompts
    clock = time.perf_counter()
    gguf_path = write_gguf(merged, tokenizer, out / GGUF_NAME, dtype, name=name)
    seconds["write gguf"] = time.perf_counter() - clock
    clock = time.perf_counter()
    reloaded, reloaded_tokenizer = load_gguf(gguf_path)
    parity, _ = compare_stage(
        "merged -> GGUF",
        merged,
        tokenizer,
        reloaded,
        reloaded_tokenizer,
        conversations,
        ids,
        GGUF_TOLERANCE[dtype],
        decoding,
        answers_a=answers,
    )
    template = compare_templates(tokenizer, reloaded_tokenizer, conversations, ids)
    seconds["gguf parity"] = time.perf_counter() - clock
    return gguf_path, reloaded_tokenizer, parity, template
