"""Forgetting at equal steps: LoRA, full fine-tuning and LoRA with general data mixed in, on support tickets.

    FTLIB_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/forgetting.py [--steps 40] [--share 0.1]
        [--n-listings 24] [--n-tickets 32] [--runs-dir DIR] [--json benchmarks/results/forgetting.json]

Each variant trains with the ``cpu`` profile's settings (batch 8, LoRA r 16 at learning rate 1e-3, label token
weight 10) for the same ``--steps`` on the curated train split (``common.curated_splits``):
- ``lora``: the profile as it is;
- ``full``: every weight trains, at ``--full-learning-rate`` (default 5e-5: a choice, not tuned here; the LoRA
  rate of 1e-3 on every weight of the model would move it far more than any fine-tune would be run at);
- ``lora+mix``: LoRA on the train split with ``--share`` general prompt/answer pairs mixed in
  (``forgetting.mix_general`` over the ``mix`` half of ``data/samples/generic_prompts.jsonl``).
Each tuned model is then measured against the base (``forgetting.measure``): the mean per-token KL(base||tuned)
on the 40 ``measure`` prompts and on the first ``--n-listings`` listings records (prompt + the base's greedy
continuation, teacher-forced), the listings task scores of base and tuned, and the ticket task's scores on the
first ``--n-tickets`` hand-written field-test tickets (has tuning worked at all). Every figure has its 95%
bootstrap interval over prompts. One seed: differences inside the intervals are not differences.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import curated_splits  # noqa: E402

from ftlib.core.fileio import write_json  # noqa: E402
from ftlib.core.runtime import configure_cpu_threads  # noqa: E402
from ftlib.core.tasks import LISTINGS, SUPPORT_TICKETS  # noqa: E402
from ftlib.data.records import read_jsonl  # noqa: E402
from ftlib.engine import train  # noqa: E402
from ftlib.engine.models import load_model  # noqa: E402
from ftlib.engine.profiles import resolve_profile  # noqa: E402
from ftlib.measure import forgetting
from ftlib.measure.evaluate import evaluate_model  # noqa: E402

SHOWN = ("json_valid", "category_accuracy", "urgency_accuracy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps of every variant")
    parser.add_argument("--share", type=float, default=0.1, help="share of general records in the mixed train set")
    parser.add_argument("--full-learning-rate", type=float, default=5e-5)
    parser.add_argument("--n-val", type=int, default=16, help="validation records (one evaluation, at the end)")
    parser.add_argument("--n-listings", type=int, default=24, help="listings records probed and scored")
    parser.add_argument("--n-tickets", type=int, default=32, help="field-test tickets scored (0: none)")
    parser.add_argument("--variants", nargs="+", default=["lora", "full", "lora+mix"])
    parser.add_argument("--runs-dir", type=Path, help="keep the trained runs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/forgetting.json"))
    args = parser.parse_args(argv)

    threads = configure_cpu_threads()
    profile = resolve_profile("cpu", max_steps=args.steps)
    splits = curated_splits("support_tickets", profile.base_model, profile.train.max_length)
    general = forgetting.read_generic("mix")
    measured = forgetting.read_generic("measure")
    listings = [r for r in read_jsonl(LISTINGS.data_file) if str(r.get("description", "")).strip()][: args.n_listings]
    tickets = read_jsonl(SUPPORT_TICKETS.field_test_file)[: args.n_tickets]
    probes = forgetting.probes(measured, listings, LISTINGS)
    common = {"eval_steps": args.steps, "save_checkpoints": False}
    configs = {
        "lora": profile.train_config("lora", **common),
        "full": profile.train_config("full", learning_rate=args.full_learning_rate, **common),
        "lora+mix": profile.train_config("lora", **common),
    }
    train_sets = {
        "lora": splits["train"],
        "full": splits["train"],
        "lora+mix": forgetting.mix_general(splits["train"], general, args.share, seed=0),
    }
    print(
        f"{args.steps} steps x {profile.train.batch_size}, {threads} thread(s); train {len(splits['train'])} tickets "
        f"(+{len(train_sets['lora+mix']) - len(splits['train'])} general in the mix); probes: {len(measured)} "
        f"generic + {len(listings)} listings; {len(tickets)} field-test tickets",
        flush=True,
    )
    results: dict = {
        "settings": vars(args) | {"json": str(args.json), "runs_dir": str(args.runs_dir), "threads": threads},
        "configs": {name: asdict(config) for name, config in configs.items()},
        "note": "one seed, measured on this machine; KL in nats per token; intervals: 95% bootstrap over prompts",
        "variants": {},
    }

    def score_tickets(model, tokenizer) -> dict | None:
        if not tickets:
            return None
        result = evaluate_model(model, tokenizer, tickets, SUPPORT_TICKETS, profile.decoding)
        return {name: asdict(result.metrics[name]) for name in SHOWN}

    base, tokenizer = load_model(profile.base_model)
    started = time.perf_counter()
    reference = forgetting.base_reference(base, tokenizer, probes, listings, LISTINGS, profile.decoding)
    results["base"] = {
        "reference_seconds": round(time.perf_counter() - started, 1),
        "tickets": score_tickets(base, tokenizer),
    }
    print(f"base reference: {results['base']['reference_seconds']} s; tickets {results['base']['tickets']}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.runs_dir or Path(scratch)
        for name in args.variants:
            run = train.train(
                profile.base_model,
                train_sets[name],
                splits["val"][: args.n_val],
                folder / name.replace("+", "-"),
                config=configs[name],
                task=SUPPORT_TICKETS,
            )
            started = time.perf_counter()
            report = forgetting.measure(
                base,
                run.model,
                tokenizer,
                probes,
                listings,
                LISTINGS,
                label=name,
                reference=reference,
                decoding=profile.decoding,
            )
            entry = {
                "train_seconds": run.record.metrics.train_seconds,
                "final_val_loss": run.record.metrics.final_val_loss,
                "train_examples": len(train_sets[name]),
                "measure_seconds": round(time.perf_counter() - started, 1),
                "forgetting": report.as_dict(),
                "rows": report.rows(),
                "tickets": score_tickets(run.model, run.tokenizer),
            }
            results["variants"][name] = entry
            write_json(results, args.json)  # after every variant: a crash keeps what was measured
            print(f"{name}: trained {entry['train_seconds']:.0f} s, val loss {entry['final_val_loss']:.4f}", flush=True)
            for row in entry["rows"]:
                print("  " + "  ".join(f"{k}: {v}" for k, v in row.items() if k != "model"), flush=True)
            print(f"  tickets: {entry['tickets']}", flush=True)
            del run
    print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
