"""Quality bar of lesson 05: does a 15-minute CPU fine-tune of the embedded default learn the ticket task?

Usage (from the repository root, with ``.venv`` built)::

    .venv/bin/python benchmarks/quality_bar.py [--methods lora qlora] [--steps N] [--base]
    .venv/bin/python benchmarks/quality_bar.py --run-dir runs/support_tickets-cpu   # after `make curriculum`

Trains each method with the ``cpu`` profile's hyperparameters (override with the flags) on the
curated ``support_tickets`` train split, then generates greedy answers for the test split and
prints each metric with its 95% bootstrap interval, the training time, and whether the bar is met:
JSON validity >= 0.98, category accuracy >= 0.90, urgency accuracy >= 0.80 within 15 minutes of
training, and QLoRA within 3 points of LoRA on each.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BAR = {"json_valid": 0.98, "category_accuracy": 0.90, "urgency_accuracy": 0.80}
TRAINING_BUDGET_SECONDS = 15 * 60


def describe(metrics: dict) -> str:
    return "  ".join(
        f"{name} {metrics[name]['value']:.3f} [{metrics[name]['low']:.3f}, {metrics[name]['high']:.3f}]" for name in BAR
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["lora", "qlora"], choices=["lora", "qlora"])
    parser.add_argument("--steps", type=int, help="training steps (default: the cpu profile's)")
    parser.add_argument("--learning-rate", type=float, help="default: the cpu profile's")
    parser.add_argument("--n-test", type=int, help="test examples (default: the cpu profile's, as lesson 05)")
    parser.add_argument("--base", action="store_true", help="also score the base model zero-shot")
    parser.add_argument("--output", help="write all metrics to this JSON file")
    parser.add_argument("--run-dir", help="score the runs lesson 05 evaluated in this folder instead of training")
    args = parser.parse_args()
    if args.run_dir:
        report(results_from_run_dir(Path(args.run_dir)), ["lora", "qlora"])
        return

    from common import curated_splits

    from ftlib import train
    from ftlib.evaluate import evaluate_model
    from ftlib.models import load_model
    from ftlib.profiles import resolve_profile
    from ftlib.tasks import SUPPORT_TICKETS

    profile = resolve_profile("cpu", max_steps=args.steps, learning_rate=args.learning_rate)
    splits = curated_splits(max_length=profile.max_length)
    test = splits["test"][: args.n_test or profile.n_test]  # lesson 05 scores the profile's first n_test
    print(
        f"train {len(splits['train'])}, val {profile.n_val}, test {len(test)}; {profile.max_steps} steps x "
        f"{profile.batch_size}, learning rate {profile.learning_rate}",
        flush=True,
    )
    results = {}
    if args.base:
        model, tokenizer = load_model(profile.base_model)
        results["base"] = evaluate_model(
            model, tokenizer, test, SUPPORT_TICKETS, profile.eval_batch_size, profile.max_new_tokens
        )
        print(f"base zero-shot: {describe(results['base']['metrics'])}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            config = profile.train_config(method)
            run = train.train(
                profile.base_model,
                splits["train"],
                splits["val"][: profile.n_val],
                Path(scratch) / method,
                config=config,
                task=SUPPORT_TICKETS,
            )
            result = evaluate_model(
                run.model, run.tokenizer, test, SUPPORT_TICKETS, profile.eval_batch_size, profile.max_new_tokens
            )
            result["train_seconds"] = run.record.metrics.train_seconds
            result["final_val_loss"] = run.record.metrics.final_val_loss
            results[method] = result
            print(
                f"{method}: trained {result['train_seconds']:.0f} s, val loss {result['final_val_loss']:.4f}\n"
                f"  {describe(result['metrics'])}",
                flush=True,
            )
            del run
    report(results, args.methods)
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))


def results_from_run_dir(run_dir: Path) -> dict:
    """Lesson 05's test metrics and lessons 03/04's run records, in this script's layout."""
    from ftlib.runs import load_run

    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    results = {}
    for method, name in (("lora", "LoRA"), ("qlora", "QLoRA")):
        record = load_run(run_dir / method)
        results[method] = metrics[name] | {
            "train_seconds": record.metrics.train_seconds,
            "final_val_loss": record.metrics.final_val_loss,
        }
        print(
            f"{method}: trained {record.metrics.train_seconds:.0f} s ({record.config.max_steps} steps, "
            f"{record.torch_threads} threads), val loss {record.metrics.final_val_loss:.4f}, "
            f"{metrics[name]['examples']} test examples\n  {describe(metrics[name]['metrics'])}"
        )
    for name in ("base (zero-shot)", "base (few-shot)"):
        if name in metrics:
            results[name] = metrics[name]
            print(f"{name}: {describe(metrics[name]['metrics'])}")
    return results


def report(results: dict, methods: list[str]) -> None:
    """Print whether each method meets the bar, the QLoRA - LoRA gaps, and the gaps to the base model."""
    print("\nquality bar")
    for method in methods:
        metrics, seconds = results[method]["metrics"], results[method]["train_seconds"]
        misses = [
            f"{name} {metrics[name]['value']:.3f} < {bar}" for name, bar in BAR.items() if metrics[name]["value"] < bar
        ]
        if seconds > TRAINING_BUDGET_SECONDS:
            misses.append(f"training took {seconds:.0f} s > {TRAINING_BUDGET_SECONDS}")
        print(f"  {method}: {'met' if not misses else 'missed: ' + '; '.join(misses)}")
    if {"lora", "qlora"} <= set(results):
        gaps = {
            name: results["qlora"]["metrics"][name]["value"] - results["lora"]["metrics"][name]["value"] for name in BAR
        }
        print(
            "  QLoRA - LoRA: "
            + ", ".join(f"{name} {100 * gap:+.1f} pts" for name, gap in gaps.items())
            + (" (within 3 points)" if all(gap >= -0.03 for gap in gaps.values()) else " (more than 3 points)")
        )
    for baseline in ("base", "base (zero-shot)", "base (few-shot)"):
        if baseline in results and "lora" in results:
            for name in BAR:
                lora, base = results["lora"]["metrics"][name], results[baseline]["metrics"][name]
                print(
                    f"  LoRA - {baseline} {name}: {lora['value'] - base['value']:+.3f} "
                    f"(LoRA [{lora['low']:.3f}, {lora['high']:.3f}] vs [{base['low']:.3f}, {base['high']:.3f}])"
                )


if __name__ == "__main__":
    main()
