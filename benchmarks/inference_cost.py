"""Inference cost of lesson 07: a tuned LoRA with the short zero-shot prompt, the base model with a few-shot prompt,
and the adapter merged into the weights, on the same tickets; then labelled estimates for a 7-8B model and a GPU.

    FTLIB_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/inference_cost.py --run RUN_FOLDER [--n 32]
        [--batch-size 32] [--max-new-tokens 80] [--json benchmarks/results/inference_cost.json]

``--run``: a LoRA run folder (``manifest.json`` and ``adapter/``), e.g. one ``benchmarks/forgetting.py --runs-dir``
kept. Tickets: the first ``--n`` hand-written field-test tickets. Few-shot: the three solved examples lesson 05's
baseline and ``benchmarks/generation_speed.py`` show (drawn from generated tickets, seed 0). Every pass is greedy,
batched, longest prompts first, with the shared prompt prefix cached once
(``ftlib.engine.inference.generate_tokens``), in
this one process one after the other (the same load for all). Dollar figures are estimates from ASSUMED prices
(``ftlib.measure.cost``); the 7-8B and GPU rows are estimates from the formulas they carry, never measurements.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftlib.core.config import Decoding  # noqa: E402
from ftlib.core.fileio import write_json  # noqa: E402
from ftlib.core.runs import load_run  # noqa: E402
from ftlib.core.runtime import available_cores, configure_cpu_threads  # noqa: E402
from ftlib.core.tasks import SUPPORT_TICKETS  # noqa: E402
from ftlib.data.records import read_jsonl  # noqa: E402
from ftlib.data.samples import generate_clean_tickets  # noqa: E402
from ftlib.engine.adapters import load_for_eval  # noqa: E402
from ftlib.engine.models import count_parameters, load_model  # noqa: E402
from ftlib.measure import cost, evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a LoRA run folder")
    parser.add_argument("--n", type=int, default=32, help="field-test tickets")
    parser.add_argument("--batch-size", type=int, default=32, help="the cpu profile's eval batch")
    parser.add_argument("--max-new-tokens", type=int, default=80, help="the cpu profile's")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of the three setups after the first")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/inference_cost.json"))
    args = parser.parse_args(argv)

    load = os.getloadavg()[0]  # before this process loads anything: what else was running
    threads = configure_cpu_threads()
    record = load_run(args.run)
    if record.method == "full":
        parser.error(f"{args.run} is a full fine-tune: it has no adapter to merge")
    tuned, tokenizer, label = load_for_eval(str(args.run))
    base, _ = load_model(record.base_model)
    tickets = read_jsonl(SUPPORT_TICKETS.field_test_file)[: args.n]
    shots = evaluate.few_shot_examples(generate_clean_tickets(60, random.Random(0)), SUPPORT_TICKETS, k=3)
    parameters = count_parameters(base).total
    print(
        f"{label} vs base {record.base_model} ({parameters:,} parameters); {len(tickets)} tickets, batch "
        f"{args.batch_size}, {threads} thread(s)",
        flush=True,
    )
    merged = cost.merged_copy(tuned)
    report = cost.measure(
        tuned,
        base,
        tokenizer,
        tickets,
        SUPPORT_TICKETS,
        shots,
        Decoding(args.batch_size, args.max_new_tokens),
        parameters,
        merged=merged,
    )
    for row in report.rows():
        print("  " + "  ".join(f"{k}: {v}" for k, v in row.items()), flush=True)
    print(f"merged vs unmerged: {report.merged_identical[0]}/{report.merged_identical[1]} identical answers")
    zero_shot = [SUPPORT_TICKETS.prompt_messages(t) for t in tickets]
    few = [SUPPORT_TICKETS.prompt_messages(t, shots) for t in tickets]
    names = [m.name for m in report.measurements]  # tuned unmerged, base few-shot, tuned merged
    spreads, rounds = cost.repeated_passes(
        {names[0]: (tuned, zero_shot), names[1]: (base, few), names[2]: (merged, zero_shot)},
        tokenizer,
        args.repeats,
        Decoding(args.batch_size, args.max_new_tokens),
    )
    print(f"{args.repeats} more rounds, order rotated (s/ticket: mean [lowest, highest pass]):")
    for spread in spreads.values():
        low, high = spread.interval
        print(f"  {spread.name}: {spread.mean:.3f} [{low:.3f}, {high:.3f}]")
    ratios = {
        "base few-shot / tuned": cost.ratio_range(rounds, names[1], names[0]),
        "merged / unmerged": cost.ratio_range(rounds, names[2], names[0]),
    }
    for label, (mean, low, high) in ratios.items():
        print(f"  {label}: {mean:.2f} [{low:.2f}, {high:.2f}] (within each round)")
    write_json(
        {
            "settings": {
                "run": str(args.run),
                "base_model": record.base_model,
                "base_parameters": parameters,
                "tickets": len(tickets),
                "batch_size": args.batch_size,
                "max_new_tokens": args.max_new_tokens,
                "threads": threads,
                "few_shot": [s.get("id") for s in shots],
            },
            "note": f"measured on this machine ({available_cores()} cores; 1-minute load average {load:.2f} when it "
            "started, so above 0 means other jobs ran beside it); USD figures and every row under 'estimates' are "
            "estimates from the assumptions and formulas they state",
            **report.as_dict(),
            "rows": report.rows(),
            "repeated": {
                "rounds": rounds,
                "seconds_per_ticket": {
                    s.name: {"mean": s.mean, "low": s.interval[0], "high": s.interval[1]} for s in spreads.values()
                },
                "ratios": {k: {"mean": m, "low": lo, "high": hi} for k, (m, lo, hi) in ratios.items()},
            },
        },
        args.json,
    )
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
