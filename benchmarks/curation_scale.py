"""Curation and tokenization at scale: time and peak memory of each step for 10k, 100k and 1M generated records.

    PYTHONPATH=. python benchmarks/curation_scale.py [--sizes 10000 100000 1000000] [--json out.json]

Data: one sample-like block is generated as the committed sample is (2,790 distinct clean tickets, flaws
injected: PII, markup, layouts, junk, other languages, exact, near and conflicting duplicates); every further
block derives its records from that block's, in the same order and with the same flaws, each text given a
sentence of another ticket, a note of words drawn from the sample (as long as the original text) and a case
number. The extra text is chosen per duplicate family (a record and its injected copies), so injected duplicates
stay duplicates of each other, while a record's versions in two blocks share less than half their text, far
under the 0.7 Jaccard threshold: the duplicate rates stay the sample's at every size. Texts are about 3x the
sample's length, so each record costs more than a sample record. Junk and other-language texts are left as they
are (their steps drop them before de-duplication).

Measurement: each size runs in a fresh process. Each step of ``ftlib.data.curate.curate`` is timed with
``time.perf_counter`` on its own (no tracing); memory is the process's peak resident set size during the step
(Linux ``VmHWM``, reset before each step through ``/proc/self/clear_refs``; where that is not possible, the
peak since the process started). Then the curated records are rendered with the chat template and tokenized
with the embedded model's tokenizer in batches (``datasets.Dataset.map``), with ``num_proc`` 1 and 2.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

from ftlib.core.tasks import SUPPORT_TICKETS
from ftlib.data import curate
from ftlib.data.flaws import inject_ticket_flaws
from ftlib.data.records import Records, to_messages
from ftlib.data.samples import generate_clean_tickets, replies_by_label

BLOCK = 2790  # clean tickets per block, as in the committed sample (ftlib.data.samples.write_samples)
TEXT_KEYS = ("ticket", *SUPPORT_TICKETS.field_aliases["ticket"])  # where a record's text is, whatever its layout
KEEP_AS_IS = ("junk", "non_english")  # flaws that extra English text would hide
SENTENCE = re.compile(r"(?<=[.?!])\s+")


def generate(n: int, seed: int = 1234) -> Records:
    """``n`` raw records: one sample-like block, then blocks derived from it (see the module docstring)."""
    rng = random.Random(seed)
    clean = generate_clean_tickets(BLOCK, rng)
    base, manifest = inject_ticket_flaws(clean, SUPPORT_TICKETS, rng, replies_by_label())
    flaws = manifest["flaws"]
    sentences = {s for r in clean for s in SENTENCE.split(r["ticket"]) if len(s.split()) >= 4}
    pool = sorted({re.sub(r"\d+", "9", s.lower()): s for s in sorted(sentences)}.values())  # one per template
    words = sorted({w for r in clean for w in re.findall(r"[a-z]{3,}", f"{r['ticket']} {r['reply']}".lower())})
    text = {r["id"]: next(r[k] for k in TEXT_KEYS if isinstance(r.get(k), str)) for r in base}
    lengths = {i: len(t) for i, t in text.items()}  # a family's extras follow its original's length
    records = [{**r, "id": f"0-{r['id']}"} for r in base[:n]]
    block = 1
    while len(records) < n:
        for record in base[: n - len(records)]:
            flaw = flaws.get(record["id"], {})
            family = flaw.get("of", record["id"])  # an injected copy varies as its original does
            derived = {**record, "id": f"{block}-{record['id']}"}
            if flaw.get("class") not in KEEP_AS_IS:
                pick = random.Random(f"{seed}:{block}:{family}")
                key = next(k for k in TEXT_KEYS if isinstance(record.get(k), str))
                note = []  # words of other tickets, as long as the text: what two versions share stays under half
                while sum(len(w) + 1 for w in note) < lengths.get(family, len(record[key])):
                    note.append(pick.choice(words))
                extra = [pick.choice(pool), f"Note: {' '.join(note)}.", f"Case {pick.randrange(10**7):07d}."]
                derived[key] = " ".join([record[key], *extra])
            records.append(derived)
        block += 1
    return Records(records)


class Meter:
    """Seconds and peak resident memory (MiB) of each step, in the order they ran."""

    def __init__(self):
        self.steps: dict[str, dict] = {}
        self.resettable = self._reset()
        self.baseline = self._peak()

    @staticmethod
    def _reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS
            return True
        except OSError:
            return False

    @staticmethod
    def _peak() -> float:
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def __call__(self, name: str, function, *args, **kwargs):
        self._reset()
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.steps[name] = {"seconds": time.perf_counter() - start, "peak_mib": self._peak()}
        return result


def _tokenize(batch: dict, tokenizer, task) -> dict:
    rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
    texts = [tokenizer.apply_chat_template(to_messages(r, task), tokenize=False) for r in rows]
    return {"input_ids": tokenizer(texts)["input_ids"]}


def run_size(n: int, num_procs: list[int], seed: int) -> dict:
    """One size, in this (fresh) process: every step's seconds and peak memory, and what curation dropped."""
    import datasets

    from ftlib.engine.models import load_tokenizer

    datasets.disable_progress_bars()
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    task, meter = SUPPORT_TICKETS, Meter()
    raw = meter("generate", generate, n, seed)
    ledger = curate._Ledger(raw)
    for name, step in curate.RECORD_STEPS:
        meter(name, lambda s=step, name=name: ledger.apply(name, s(ledger.records, task, "raw.jsonl")))

    def duplicates():
        found = curate.step_duplicates(ledger.records, task, 0.7, "raw.jsonl")
        drops = [("exact_duplicates", found.exact), ("near_duplicates", found.near), ("conflicts", found.conflicts)]
        for name, result in curate._drop_in_turn(ledger.records, drops):
            ledger.apply(name, result)

    meter("duplicates", duplicates)
    curation = [name for name in meter.steps if name != "generate"]
    fields = (task.input_field, *task.answer_fields)
    dataset = datasets.Dataset.from_dict({f: [r[f] for r in ledger.records] for f in fields})
    tokens = {}
    for procs in num_procs:
        tokenized = meter(
            f"tokenize_np{procs}",
            dataset.map,
            _tokenize,
            batched=True,
            batch_size=1000,
            num_proc=procs if procs > 1 else None,
            keep_in_memory=True,
            remove_columns=list(fields),
            fn_kwargs={"tokenizer": tokenizer, "task": task},
        )
        tokens[procs] = sum(map(len, tokenized["input_ids"]))
    if len(set(tokens.values())) > 1:
        raise RuntimeError(f"num_proc changed the tokens: {tokens}")
    return {
        "records": n,
        "kept": len(ledger.records),
        "tokens": next(iter(tokens.values()), None),
        "dropped": {s["step"]: s["dropped"] for s in ledger.steps if s["dropped"]},
        "steps": meter.steps,
        "curate_seconds": sum(meter.steps[s]["seconds"] for s in curation),
        "curate_peak_mib": max(meter.steps[s]["peak_mib"] for s in curation),
        "mean_chars": sum(len(r[task.input_field]) for r in ledger.records) / max(1, len(ledger.records)),
        "baseline_mib": meter.baseline,
        "memory": "peak RSS during each step (VmHWM reset per step)"
        if meter.resettable
        else "peak RSS of the process so far (getrusage)",
        "workers_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "cpus": os.cpu_count(),
    }


def table(results: dict[int, dict]) -> str:
    """Seconds and peak MiB of every step at every size, and the growth of each per 10x more records."""
    sizes = sorted(results)
    steps = list(results[sizes[0]]["steps"]) + ["curate (all steps but generate, tokenize)"]

    def cell(n, step, key):
        if step.startswith("curate"):
            return results[n]["curate_seconds" if key == "seconds" else "curate_peak_mib"]
        return results[n]["steps"].get(step, {}).get(key)  # None: not run at this size

    head = f"{'step':<44}" + "".join(f"{f'{n:,} s':>13}{f'{n:,} MiB':>15}" for n in sizes)
    head += "".join(f"{f'time {b // a}x':>10}{'mem*':>7}" for a, b in zip(sizes, sizes[1:]))
    lines = [head]
    for step in steps:
        row = f"{step:<44}"
        for n in sizes:
            seconds, peak = cell(n, step, "seconds"), cell(n, step, "peak_mib")
            row += f"{seconds:>13.2f}{peak:>15.0f}" if seconds is not None else f"{'-':>13}{'-':>15}"
        for a, b in zip(sizes, sizes[1:]):
            if cell(a, step, "seconds") is None or cell(b, step, "seconds") is None:
                row += f"{'-':>10}{'-':>7}"
                continue
            time_ratio = cell(b, step, "seconds") / max(cell(a, step, "seconds"), 1e-9)
            above = [max(cell(m, step, "peak_mib") - results[m]["baseline_mib"], 1.0) for m in (a, b)]
            row += f"{time_ratio:>9.1f}x{above[1] / above[0]:>6.1f}x"
        lines.append(row)
    lines.append("")
    for n in sizes:
        r = results[n]
        lines.append(
            f"{n:,}: kept {r['kept']:,} (mean {r['mean_chars']:.0f} chars); dropped {r['dropped']}; "
            f"{r['tokens']:,} tokens; "
            f"baseline {r['baseline_mib']:.0f} MiB; tokenizer workers' peak {r['workers_peak_mib']:.0f} MiB"
        )
    lines.append(f"MiB: {results[sizes[0]]['memory']}, one fresh process per size; mem* = growth of the peak above")
    lines.append("the process's baseline (imports, tokenizer) before generating.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="tokenization processes to compare")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--skip-over", type=int, default=None, help="skip sizes above this, printing why")
    parser.add_argument("--json", type=Path, help="results file; sizes already in it are kept unless rerun")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one size, in this process
    args = parser.parse_args()
    if args.child:
        args.json.write_text(json.dumps(run_size(args.child, args.num_proc, args.seed), indent=1))
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from common import run_child

    results = {}
    if args.json and args.json.exists():
        results = {int(n): r for n, r in json.loads(args.json.read_text())["sizes"].items()}
    for n in args.sizes:
        if args.skip_over and n > args.skip_over:
            print(f"{n}: skipped (--skip-over {args.skip_over}: would not finish in the time available)")
            continue
        with tempfile.TemporaryDirectory() as folder:
            options = ["--child", str(n), "--seed", str(args.seed), "--num-proc", *map(str, args.num_proc)]
            results[n] = run_child(__file__, options, Path(folder) / "size.json")
        r = results[n]
        print(f"{n:,}: curated in {r['curate_seconds']:.1f} s, peak {r['curate_peak_mib']:.0f} MiB", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"sizes": {str(k): results[k] for k in sorted(results)}}, indent=1))
    if results:
        print("\n" + table(results))


if __name__ == "__main__":
    main()
