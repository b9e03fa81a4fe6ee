"""Curation and tokenization at scale: time and peak memory of each step for 10k, 100k and 1M generated records.

    PYTHONPATH=. python benchmarks/curation_scale.py [--sizes 10000 100000] [--json out.json]

Records come in blocks like the committed sample (2,790 clean tickets with flaws injected), each block from its
own seed, so the data repeat the sample's mix of flaws and templates at every size. Each step of
``ftlib.curate.curate`` is timed on its own, with peak traced Python memory (``tracemalloc``) per step; then the
curated records are tokenized with the embedded model's tokenizer in batches (``datasets.Dataset.map``).
"""

from __future__ import annotations

import argparse
import json
import random
import time
import tracemalloc
from pathlib import Path

from ftlib import curate
from ftlib.data import Records, to_messages
from ftlib.flaws import inject_ticket_flaws
from ftlib.models import load_tokenizer
from ftlib.samples import generate_clean_tickets, replies_by_label
from ftlib.tasks import SUPPORT_TICKETS

BLOCK = 2790  # clean tickets per block, as in the committed sample (ftlib.samples.write_samples)


def generate(n: int, seed: int = 1234) -> Records:
    """``n`` raw records: sample-like blocks, each generated and flawed from its own seed."""
    records: list[dict] = []
    replies = replies_by_label()
    block = 0
    while len(records) < n:
        rng = random.Random(seed + block)
        raw, _ = inject_ticket_flaws(generate_clean_tickets(BLOCK, rng), SUPPORT_TICKETS, rng, replies)
        records += [{**r, "id": f"{block}-{r.get('id')}"} for r in raw]
        block += 1
    return Records(records[:n])


def measured(function, *args):
    """``(result, seconds, peak MiB)`` of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    result = function(*args)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return result, seconds, peak


def run(n: int, tokenizer) -> dict[str, tuple[float, float]]:
    """Seconds and peak MiB of each curation step and of batched tokenization, for ``n`` records."""
    import datasets

    task, table = SUPPORT_TICKETS, {}
    raw, seconds, peak = measured(generate, n)
    print(f"{n}: generated in {seconds:.1f} s", flush=True)
    ledger = curate._Ledger(raw)
    for name, step in curate.RECORD_STEPS:
        result, seconds, peak = measured(step, ledger.records, task, "raw.jsonl")
        ledger.apply(name, result)
        table[name] = (seconds, peak)
    found, seconds, peak = measured(curate.step_duplicates, ledger.records, task, 0.7, "raw.jsonl")
    table["duplicates"] = (seconds, peak)
    for name, result in curate._drop_in_turn(
        ledger.records,
        [("exact_duplicates", found.exact), ("near_duplicates", found.near), ("conflicts", found.conflicts)],
    ):
        ledger.apply(name, result)
    texts = [tokenizer.apply_chat_template(to_messages(r, task), tokenize=False) for r in ledger.records]
    dataset = datasets.Dataset.from_dict({"text": texts})
    tokenized, seconds, peak = measured(
        lambda: dataset.map(lambda b: tokenizer(b["text"]), batched=True, batch_size=1000, keep_in_memory=True)
    )
    table["tokenize"] = (seconds, peak)
    table["total"] = (sum(s for s, _ in table.values()), max(p for _, p in table.values()))
    print(f"{n}: {len(ledger.records)} kept; " + ", ".join(f"{k} {s:.1f}s" for k, (s, _) in table.items()), flush=True)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--skip-over", type=int, default=None, help="skip sizes above this, printing why")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import datasets

    datasets.disable_progress_bars()
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    results = {}
    for n in args.sizes:
        if args.skip_over and n > args.skip_over:
            print(f"{n}: skipped (--skip-over {args.skip_over}: would not finish in the time available)")
            continue
        results[n] = run(n, tokenizer)
    sizes = sorted(results)
    print(
        f"\n{'step':<12}" + "".join(f"{f'{n} s':>11}{f'{n} MiB':>11}" for n in sizes) + "   growth per 10x (time, mem)"
    )
    for step in results[sizes[0]]:
        cells = "".join(f"{results[n][step][0]:>11.2f}{results[n][step][1]:>11.1f}" for n in sizes)
        ratios = [
            [results[b][step][i] / max(results[a][step][i], 1e-9) for i in (0, 1)] for a, b in zip(sizes, sizes[1:])
        ]
        growth = [f"{t:.1f}x, {m:.1f}x" for t, m in ratios]
        print(f"{step:<12}{cells}   {'; '.join(growth)}")
    if args.json:
        args.json.write_text(json.dumps({str(n): t for n, t in results.items()}, indent=1))


if __name__ == "__main__":
    main()
