"""Generation speed: ``ftlib.engine.inference.generate`` (shared prompt prefix cached once) against plain
``model.generate``.

    PYTHONPATH=. python benchmarks/generation_speed.py [--model PATH] [--n 64] [--batch-size 16] [--json out.json]

Prompts: the first ``--n`` tickets of the hand-written field test, zero-shot and with the three solved examples
lesson 05's few-shot baseline shows (drawn from generated tickets). Every side decodes greedily with the same
``max_new_tokens`` and batch size, longest prompts first:
- plain: each batch tokenized with left padding and handed to ``model.generate``, as the transformers docs do it;
- ftlib, full answers: ``inference.generate``, which runs the prompts' common token prefix (the system turn with the
  instruction, and the solved examples) once, starts every batch from a copy of its key/value cache, and drops a row
  from the batch at its EOS;
- ftlib, scored: the same as evaluation calls it (``json_answers``): an answer stops
  ``Decoding.invalid_tail_tokens`` tokens after it can no longer parse as JSON, its score decided.

Printed per prompt style: seconds for each side, the ratios plain / ftlib, tokens generated, and the checks: the
full answers identical to plain's (greedy decoding in fp32: any difference is named), each scored answer the
beginning of plain's with the same ``parse_answer`` verdict. All sides run in this one process, one after the
other, so the ratios are measured under the same load. The model defaults to the embedded base model; ``--model``
takes any local folder (e.g. a run's ``lora/merged``).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import machine  # noqa: E402

from ftlib.core.config import Decoding  # noqa: E402
from ftlib.core.fileio import write_json  # noqa: E402
from ftlib.core.runtime import configure_cpu_threads  # noqa: E402
from ftlib.core.tasks import get_task, parse_answer  # noqa: E402
from ftlib.data.batches import prompt_text  # noqa: E402
from ftlib.data.records import read_jsonl  # noqa: E402
from ftlib.data.samples import generate_clean_tickets  # noqa: E402
from ftlib.engine import inference  # noqa: E402
from ftlib.engine.models import DEFAULT_MODEL, load_model  # noqa: E402
from ftlib.engine.profiles import field_test_path  # noqa: E402
from ftlib.measure import evaluate  # noqa: E402


@torch.no_grad()
def plain_generate(model, tokenizer, conversations, batch_size: int, max_new_tokens: int) -> tuple[list[str], int]:
    """Batched greedy generation as the transformers docs show it; returns the answers and the tokens generated."""
    tokenizer.padding_side = "left"
    texts = [prompt_text(tokenizer, c) for c in conversations]
    order = sorted(range(len(texts)), key=lambda i: -len(tokenizer(texts[i], add_special_tokens=False)["input_ids"]))
    answers, generated = {}, 0
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        inputs = tokenizer([texts[i] for i in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        output = model.generate(
            **inputs.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for index, row in zip(chunk, output[:, inputs["input_ids"].shape[1] :]):
            generated += int((row != tokenizer.pad_token_id).sum())
            answers[index] = tokenizer.decode(row, skip_special_tokens=True).strip()
    return [answers[i] for i in range(len(texts))], generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="registry name or local model folder")
    parser.add_argument("--n", type=int, default=64, help="prompts per style (field-test tickets)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    threads = configure_cpu_threads()
    task = get_task("support_tickets")
    tickets = read_jsonl(field_test_path("support_tickets"))[: args.n]
    shots = evaluate.few_shot_examples(generate_clean_tickets(60, random.Random(0)), task, k=3)
    model, tokenizer = load_model(args.model)
    print(f"model {args.model}, {len(tickets)} prompts per style, batch {args.batch_size}, {threads} CPU thread(s)")
    figures = {"model": args.model, "prompts": len(tickets), "batch_size": args.batch_size, "threads": threads}
    figures |= {"machine": machine(), "max_new_tokens": args.max_new_tokens}
    for style, examples in (("zero-shot", ()), ("few-shot (3 examples)", shots)):
        conversations = [task.prompt_messages(t, examples) for t in tickets]
        prompt_tokens = [len(tokenizer(prompt_text(tokenizer, c))["input_ids"]) for c in conversations]
        start = time.perf_counter()
        plain, generated = plain_generate(model, tokenizer, conversations, args.batch_size, args.max_new_tokens)
        plain_seconds = time.perf_counter() - start
        decoding = Decoding(args.batch_size, args.max_new_tokens)
        start = time.perf_counter()
        full = inference.generate_tokens(model, tokenizer, conversations, decoding)
        full_seconds = time.perf_counter() - start
        start = time.perf_counter()
        scored = inference.generate_tokens(model, tokenizer, conversations, decoding, json_answers=True)
        scored_seconds = time.perf_counter() - start
        ours = [inference.decode_answer(tokenizer, ids) for ids in full]
        cut = [inference.decode_answer(tokenizer, ids) for ids in scored]
        differ = [tickets[i].get("id") for i, (a, b) in enumerate(zip(plain, ours)) if a != b]
        # A scored answer keeps the first tokens of the full one: its text begins plain's, its verdict is plain's.
        not_prefix = [tickets[i].get("id") for i, (a, b) in enumerate(zip(scored, full)) if a != b[: len(a)]]
        verdicts = [t.get("id") for t, a, b in zip(tickets, plain, cut) if parse_answer(a) != parse_answer(b)]
        row = {
            "mean_prompt_tokens": sum(prompt_tokens) / len(prompt_tokens),
            "generated_tokens": generated,
            "scored_tokens": sum(t != tokenizer.eos_token_id for ids in scored for t in ids),  # no EOS, as plain
            "valid_json": sum(parse_answer(a) is not None for a in plain),
            "plain_seconds": round(plain_seconds, 2),
            "ftlib_seconds": round(full_seconds, 2),
            "ftlib_scored_seconds": round(scored_seconds, 2),
            "ratio": round(plain_seconds / full_seconds, 2),
            "scored_ratio": round(plain_seconds / scored_seconds, 2),
            "plain_tokens_per_second": round(generated / plain_seconds, 1),
            "ftlib_tokens_per_second": round(generated / full_seconds, 1),
            "identical": len(tickets) - len(differ),
            "differ": differ,
            "scored_prefix_of_full": len(tickets) - len(not_prefix),
            "scored_same_verdict": len(tickets) - len(verdicts),
        }
        figures[style] = row
        print(
            f"{style}: prompts of {row['mean_prompt_tokens']:.0f} tokens on average, {row['valid_json']} of "
            f"{len(tickets)} answers valid JSON; plain model.generate {plain_seconds:.1f} s; ftlib full answers "
            f"{full_seconds:.1f} s ({row['ratio']:.2f}x, {row['ftlib_tokens_per_second']:.0f} vs "
            f"{row['plain_tokens_per_second']:.0f} tokens/s), identical {row['identical']}/{len(tickets)}"
            + (f" (differ: {', '.join(differ)})" if differ else "")
            + f"; ftlib scored {scored_seconds:.1f} s ({row['scored_ratio']:.2f}x, {row['scored_tokens']} of "
            f"{generated} tokens), beginning of the full answer {row['scored_prefix_of_full']}/{len(tickets)}, "
            f"same verdict as plain {row['scored_same_verdict']}/{len(tickets)}"
        )
    if args.json:
        write_json(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
