"""Quality bar of lesson 05: does a 15-minute CPU fine-tune of the embedded default learn the ticket task?

Usage (from the repository root, with ``.venv`` built)::

    .venv/bin/python benchmarks/quality_bar.py [--methods lora qlora] [--steps N | --epochs E] [--base]
    .venv/bin/python benchmarks/quality_bar.py --run-dir runs/support_tickets-cpu   # after `make curriculum`

Trains each method with the ``cpu`` profile's hyperparameters (override with the flags) on the curated train
split of the task, then generates greedy answers for the generated test split (the profile's first ``n_test``,
as lesson 05) and both halves of the hand-written field-test set (the spec's ``field_test``, never trained on;
``ftlib.data.field_test``), and prints each metric with its 95% bootstrap interval on each, the training time, and
whether the bar is met.

The bar, on the field test's DEVELOPMENT half (the half to choose on): JSON validity >= 0.99, category accuracy
>= 0.95, urgency accuracy >= 0.85, within 15 minutes of training, and QLoRA within 3 points of LoRA on each. The
test half is printed beside it and only reported: choose variants on the dev half, never on the test half. The
generated-test figures must not drop below the previous ones (JSON 1.00, category 0.99, urgency 0.855). Entries
of the results file written before the split (no ``field_halves`` in their settings) hold the whole field test
under ``field_test``.

``--run-dir`` scores lesson 05's runs instead of training: ``eval/metrics.json`` (generated test) and, where
lesson 05 wrote it, ``eval/field_metrics.json`` (the field test's test half, as lesson 05 reports it; same layout:
run name -> evaluate_model result); with no dev half there, the bar is read on the test half, and says so.

Knobs, for the issue's question (which of them lifts the field-test scores at the same training budget):
``--lora-r``, ``--learning-rate``, ``--batch-size``, ``--steps`` or ``--epochs`` (num_epochs instead of max_steps),
``--label-token-weight`` (TrainConfig.label_token_weight: the loss weight of the tokens that spell the category
and urgency values; the reply dominates the answer tokens otherwise), ``--task PATH`` (a spec file: another
answer_fields order, or another data file for more varied data), ``--seed``. ``--name`` and ``--output`` add each
variant's settings, metrics and verdict to one JSON results file, keyed by name (written atomically).

The experiment variants, ready to run one after the other on an idle machine (each trains LoRA and QLoRA, about
half an hour; THEY HAVE NOT BEEN RUN YET unless benchmarks/results/quality_variants.json holds their names)::

    R=benchmarks/results/quality_variants.json
    .venv/bin/python benchmarks/quality_bar.py --name baseline --output $R
    .venv/bin/python benchmarks/quality_bar.py --name label-weight-3 --label-token-weight 3 --output $R
    .venv/bin/python benchmarks/quality_bar.py --name reply-first \\
        --task benchmarks/variants/support_tickets_reply_first.yaml --output $R
    .venv/bin/python benchmarks/quality_bar.py --name r32 --lora-r 32 --output $R
    .venv/bin/python benchmarks/quality_bar.py --name lr-2e-3 --learning-rate 2e-3 --output $R
    .venv/bin/python benchmarks/quality_bar.py --name epochs-2 --epochs 2 --output $R

``--lora-r`` keeps lora_alpha at 32 (the scale alpha/r halves at r=32). ``--epochs 2`` runs two passes over the
whole train split, more steps than the profile's 220 (the script prints the count): its training time is judged
by the same 15-minute bar. More varied data: a spec whose ``data`` names the other file (``--task``). Repeat a
variant with ``--seed 1`` (and another ``--name``) before trusting a difference smaller than its intervals.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BAR = {"json_valid": 0.99, "category_accuracy": 0.95, "urgency_accuracy": 0.85}  # on the field test's dev half
PREVIOUS_GENERATED = {"json_valid": 1.00, "category_accuracy": 0.99, "urgency_accuracy": 0.855}  # LoRA, cpu profile
TRAINING_BUDGET_SECONDS = 15 * 60
QLORA_TOLERANCE = 0.03  # QLoRA within 3 points of LoRA
# field_dev / field_test: the field test's halves (choose on dev, report test); before the split, field_test was all
SETS = {"field_dev": "field dev half", "field_test": "field test half", "test": "generated test"}
SHOWN = (*BAR, "reply_rougeL")  # printed with their intervals where present


@dataclass
class MethodVerdict:
    """One method against the bar: misses on the field-test set, and generated-test drops vs the previous figures."""

    method: str
    field_misses: list[str] = field(default_factory=list)
    generated_drops: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return not self.field_misses and not self.generated_drops


@dataclass
class BarReport:
    """The verdict of a set of results: per method, and the QLoRA - LoRA gaps on the field-test set."""

    methods: dict[str, MethodVerdict]
    qlora_gaps: dict[str, float] | None = None  # field test, QLoRA - LoRA, per bar metric; None without both

    @property
    def qlora_within_tolerance(self) -> bool | None:
        if self.qlora_gaps is None:
            return None
        return all(gap >= -QLORA_TOLERANCE for gap in self.qlora_gaps.values())

    @property
    def met(self) -> bool:
        return all(v.met for v in self.methods.values()) and self.qlora_within_tolerance is not False

    def as_dict(self) -> dict:
        return {
            "methods": {name: asdict(v) | {"met": v.met} for name, v in self.methods.items()},
            "qlora_gaps": self.qlora_gaps,
            "qlora_within_3_points": self.qlora_within_tolerance,
            "met": self.met,
        }


def describe(metrics: dict) -> str:
    return "  ".join(
        f"{name} {metrics[name]['value']:.3f} [{metrics[name]['low']:.3f}, {metrics[name]['high']:.3f}]"
        for name in SHOWN
        if name in metrics
    )


def judge(result: dict, method: str) -> MethodVerdict:
    """One method's result (``{"field_dev": ..., "field_test": ..., "test": ..., "train_seconds": ...}``) against
    the bar: on the dev half, or where a result has none (an older entry, or a lesson-05 run), on ``field_test``."""
    verdict = MethodVerdict(method)
    field_set = result.get("field_dev") or result.get("field_test")
    if field_set is None:
        verdict.field_misses.append("no field-test scores")
    else:
        metrics = field_set["metrics"]
        verdict.field_misses += [
            f"field {name} {metrics[name]['value']:.3f} < {bar}"
            for name, bar in BAR.items()
            if metrics[name]["value"] < bar
        ]
    seconds = result.get("train_seconds")
    if seconds is not None and seconds > TRAINING_BUDGET_SECONDS:
        verdict.field_misses.append(f"training took {seconds:.0f} s > {TRAINING_BUDGET_SECONDS}")
    generated = result["test"]["metrics"]
    verdict.generated_drops += [
        f"generated {name} {generated[name]['value']:.3f} < previous {previous}"
        for name, previous in PREVIOUS_GENERATED.items()
        if round(generated[name]["value"], 3) < previous
    ]
    return verdict


def qlora_gaps(results: dict, set_name: str) -> dict[str, float] | None:
    """QLoRA - LoRA per bar metric on one set; None unless both methods have it."""
    if not all(results.get(method, {}).get(set_name) for method in ("lora", "qlora")):
        return None
    return {
        name: results["qlora"][set_name]["metrics"][name]["value"] - results["lora"][set_name]["metrics"][name]["value"]
        for name in BAR
    }


def report(results: dict, methods: list[str]) -> BarReport:
    """Print each method's metrics on both sets, whether it meets the field-test bar, the generated-test figures
    against the previous ones, the QLoRA - LoRA gaps and the gaps to the base model; return the verdict."""
    bar_set = "field_dev" if any(results[method].get("field_dev") for method in methods) else "field_test"
    print(f"\nquality bar (on the {SETS[bar_set]}; the other sets beside it)")
    verdicts = {}
    for method in methods:
        result = results[method]
        verdict = verdicts[method] = judge(result, method)
        seconds = result.get("train_seconds")
        print(f"  {method}" + (f" (trained {seconds:.0f} s)" if seconds is not None else ""))
        for key, label in SETS.items():
            if result.get(key):
                print(f"    {label:15s} {describe(result[key]['metrics'])}  ({result[key].get('examples', '?')} ex.)")
        generated = result["test"]["metrics"]
        print(
            "    generated vs previous: "
            + ", ".join(
                f"{name} {generated[name]['value']:.3f} vs {previous} ({generated[name]['value'] - previous:+.3f})"
                for name, previous in PREVIOUS_GENERATED.items()
            )
        )
        problems = verdict.field_misses + verdict.generated_drops
        print(f"    {'met' if verdict.met else 'missed: ' + '; '.join(problems)}")
    bar_report = BarReport(verdicts, qlora_gaps(results, bar_set))
    for key, label in SETS.items():
        gaps = qlora_gaps(results, key)
        if gaps is not None:
            within = all(gap >= -QLORA_TOLERANCE for gap in gaps.values())
            print(
                f"  QLoRA - LoRA ({label}): "
                + ", ".join(f"{name} {100 * gap:+.1f} pts" for name, gap in gaps.items())
                + (" (within 3 points)" if within else " (more than 3 points)")
            )
    for baseline in ("base", "base (zero-shot)", "base (few-shot)"):
        if baseline in results and "lora" in results:
            for key, label in SETS.items():
                if not (results[baseline].get(key) and results["lora"].get(key)):
                    continue
                for name in BAR:
                    lora, base = results["lora"][key]["metrics"][name], results[baseline][key]["metrics"][name]
                    print(
                        f"  LoRA - {baseline} {name} ({label}): {lora['value'] - base['value']:+.3f} "
                        f"(LoRA [{lora['low']:.3f}, {lora['high']:.3f}] vs [{base['low']:.3f}, {base['high']:.3f}])"
                    )
    print(f"  overall: {'met' if bar_report.met else 'missed'}")
    return bar_report


def summary(result: dict) -> dict:
    """An ``evaluate_model`` result as the results file keeps it: the metrics, and each answer's 0/1 scores without
    its text, so that two variants can be compared ticket by ticket (``ftlib.lessons.claims.ticket_scores`` reads them
    back).

    ``per_example`` holds the records' ids and, for each score that is 0 or 1 on every answer (validity, each label,
    all labels), one string of "0"s and "1"s in the set's order: 500 tickets cost 500 characters, not 500 lines.
    ROUGE-L, a fraction, is kept as its mean only.
    """
    kept = {key: result[key] for key in ("metrics", "examples", "heldout") if key in result}
    predictions = result.get("predictions") or []
    names = list(dict.fromkeys(name for p in predictions for name in p["scores"]))
    columns = {
        name: "".join(str(int(p["scores"][name])) for p in predictions)
        for name in names
        if all(p["scores"].get(name) in (0.0, 1.0) for p in predictions)
    }
    if columns:
        kept["per_example"] = {"ids": [p["id"] for p in predictions], "scores": columns}
    return kept


def save_results(path: Path, name: str, entry: dict) -> dict:
    """Add (or replace) ``name``'s entry in the JSON results file, atomically and under a lock; the whole file."""
    from ftlib.core.fileio import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two variants finishing together must not lose one's entry
        everything = json.loads(path.read_text()) if path.exists() else {}
        everything[name] = entry
        write_json(everything, path)
    return everything


def default_name(args: argparse.Namespace) -> str:
    task = Path(args.task).stem if args.task else "support_tickets"
    length = f"epochs{args.epochs}" if args.epochs else f"steps{args.steps or 'profile'}"
    return (
        f"{task}-r{args.lora_r or 'profile'}-lr{args.learning_rate or 'profile'}-{length}"
        f"-w{args.label_token_weight or 'profile'}-seed{args.seed}"
        + (f"-bs{args.batch_size}" if args.batch_size else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["lora", "qlora"], choices=["lora", "qlora", "full"])
    parser.add_argument(
        "--data",
        choices=["curated", "raw", "narrow"],
        default="curated",
        help="train on lesson 02's curated train split; on the raw sample made just trainable (lesson 06's raw "
        "run: every field present, labels in the set, no validation or test ticket; nothing else cleaned); or on "
        "as many curated tickets from the narrow banks (each list of problem phrasings cut to its first few: "
        "ftlib.data.samples.NARROW_PHRASINGS), support_tickets only",
    )
    parser.add_argument("--n-train", type=int, help="train on the first N training records only (same steps)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="training steps (default: the cpu profile's)")
    length.add_argument("--epochs", type=float, help="passes over the train split instead of a step count")
    parser.add_argument("--learning-rate", type=float, help="default: the cpu profile's")
    parser.add_argument("--lora-r", type=int, help="LoRA rank (default: the cpu profile's; lora_alpha stays 32)")
    parser.add_argument("--batch-size", type=int, help="examples per step (default: the cpu profile's)")
    parser.add_argument(
        "--label-token-weight", type=float, help="TrainConfig.label_token_weight (default: the cpu profile's)"
    )
    parser.add_argument("--task", help="a task spec file (default: the built-in support_tickets)")
    parser.add_argument("--seed", type=int, default=0, help="TrainConfig.seed (default 0)")
    parser.add_argument("--n-test", type=int, help="generated test examples (default: the cpu profile's, as lesson 05)")
    parser.add_argument("--base", action="store_true", help="also score the base model zero-shot")
    parser.add_argument("--name", help="this variant's key in --output (default: built from the knobs)")
    parser.add_argument("--output", help="a JSON results file: this variant's entry is added under --name")
    parser.add_argument("--run-dir", help="score the runs lesson 05 evaluated in this folder instead of training")
    args = parser.parse_args()
    if args.run_dir:
        results = results_from_run_dir(Path(args.run_dir))
        bar = report(results, ["lora", "qlora"])
        if args.output:
            entry = {
                "settings": {"run_dir": args.run_dir},
                "configs": configs_from_run_dir(Path(args.run_dir)),  # the knobs of lessons 03/04's runs
                "results": results,
                "bar": bar.as_dict(),
            }
            save_results(Path(args.output), args.name or Path(args.run_dir).name, entry)
        return

    from common import curated_splits

    from ftlib.core.tasks import SUPPORT_TICKETS, load_task_spec
    from ftlib.data.field_test import field_half
    from ftlib.data.records import read_jsonl
    from ftlib.engine import train
    from ftlib.engine.models import load_model
    from ftlib.engine.profiles import resolve_profile
    from ftlib.measure.evaluate import evaluate_model

    task = load_task_spec(args.task) if args.task else SUPPORT_TICKETS
    if task.field_test_file is None:
        parser.error(f"{task.spec_file}: the spec names no field_test set, and the bar is on it")
    profile = resolve_profile("cpu", max_steps=args.steps, learning_rate=args.learning_rate)
    overrides = {"seed": args.seed}
    if args.label_token_weight:
        overrides["label_token_weight"] = args.label_token_weight
    if args.lora_r:
        overrides["lora_r"] = args.lora_r
    if args.batch_size:
        overrides["batch_size"] = args.batch_size
    if args.epochs:
        overrides |= {"max_steps": None, "num_epochs": args.epochs}
    splits = curated_splits(str(task.spec_file), profile.base_model, max_length=profile.train.max_length)
    if args.data == "raw":
        from ftlib.core.tasks import raw_data_file
        from ftlib.lessons.sweeps import raw_trainable

        held_out = splits["val"] + splits["test"]
        splits["train"] = raw_trainable(read_jsonl(raw_data_file(task)), task, held_out).records
    if args.data == "narrow":
        splits["train"] = narrow_train(len(splits["train"]), task, splits["val"] + splits["test"], profile)
    if args.n_train:
        if args.n_train > len(splits["train"]):
            parser.error(f"--n-train {args.n_train}: the training set has {len(splits['train'])} records")
        splits["train"] = splits["train"][: args.n_train]  # the split is shuffled and stratified: a fair subset
    field = read_jsonl(task.field_test_file)
    sets = {
        "test": splits["test"][: args.n_test or profile.n_test],  # lesson 05 scores the profile's first n_test
        "field_dev": field_half(field, "dev", task.field_test_file),  # where variants are chosen
        "field_test": field_half(field, "test", task.field_test_file),  # only reported
    }
    if not sets["field_dev"]:
        parser.error(f"{task.field_test_file}: no dev half (mark halves: python -m ftlib.data.field_test FILE)")
    configs = {method: profile.train_config(method, **overrides) for method in args.methods}
    some = next(iter(configs.values()))
    steps = some.max_steps or -(-len(splits["train"]) // (some.batch_size * some.grad_accum)) * args.epochs
    print(
        f"task {task.name} ({task.spec_file}): train {len(splits['train'])}, val {profile.n_val}, "
        f"test {len(sets['test'])}, field test dev {len(sets['field_dev'])} / test {len(sets['field_test'])}; "
        f"{steps:.0f} steps x {some.batch_size}, "
        f"learning rate {some.learning_rate}, r {some.lora_r}, label token weight {some.label_token_weight}, "
        f"seed {some.seed}",
        flush=True,
    )

    def score(model, tokenizer) -> dict:
        # As the results file keeps them: JSON-shaped, whether scored now or read back from an earlier run.
        return {
            key: asdict(evaluate_model(model, tokenizer, records, task, profile.decoding))
            for key, records in sets.items()
        }

    results = {}
    if args.base:
        model, tokenizer = load_model(profile.base_model)
        results["base"] = score(model, tokenizer)
        for key, label in SETS.items():
            print(f"base zero-shot, {label}: {describe(results['base'][key]['metrics'])}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for method, config in configs.items():
            run = train.train(
                profile.base_model,
                splits["train"],
                splits["val"][: profile.n_val],
                Path(scratch) / method,
                config=config,
                task=task,
            )
            result = score(run.model, run.tokenizer)
            result["train_seconds"] = run.record.metrics.train_seconds
            result["final_val_loss"] = run.record.metrics.final_val_loss
            result["steps_run"] = run.record.checkpoints.steps_run
            results[method] = result
            print(
                f"{method}: trained {result['train_seconds']:.0f} s ({result['steps_run']} steps), "
                f"val loss {result['final_val_loss']:.4f}",
                flush=True,
            )
            for key, label in SETS.items():
                print(f"  {label:15s} {describe(result[key]['metrics'])}", flush=True)
            del run
    bar = report(results, args.methods)
    if args.output:
        name = args.name or default_name(args)
        entry = {
            "settings": {
                "task": str(task.spec_file),
                "field_test": str(task.field_test_file),
                "field_halves": True,  # field_dev and field_test are the halves (earlier entries: field_test whole)
                "methods": args.methods,
                "knobs": {key: value for key, value in vars(args).items() if key not in ("output", "run_dir")},
            },
            "configs": {method: asdict(config) for method, config in configs.items()},
            "results": {
                method: {key: summary(value) if key in SETS else value for key, value in result.items()}
                for method, result in results.items()
            },
            "bar": bar.as_dict(),
        }
        save_results(Path(args.output), name, entry)
        print(f"results of {name!r} added to {args.output}")


NARROW_SEED = 4321  # not the committed sample's 1234: other draws, from the same rules


def narrow_train(n: int, task, held_out: list[dict], profile) -> list[dict]:
    """``n`` training tickets from the narrow banks, curated as lesson 02 curates the sample, none sharing an id
    or an input text with ``held_out``: the varied split's size and label rules, fewer ways of putting a problem."""
    from ftlib.data.curate import curate
    from ftlib.data.dedup import dedup_key
    from ftlib.data.samples import generate_support_tickets
    from ftlib.engine.models import load_tokenizer

    if task.name != "support_tickets":
        raise SystemExit(f"--data narrow: only the support_tickets generator has narrow banks, not {task.name}")
    texts = {dedup_key(task.input_text(r)) for r in held_out}
    # 15% spare: curation and the held-out filter drop a few; ids are renamed so none collides with held_out's
    generated = generate_support_tickets(n + n * 15 // 100, seed=NARROW_SEED, period="narrow")
    for record in generated:
        record["id"] = "narrow-" + record["id"]
    kept = curate(generated, task, load_tokenizer(profile.base_model), profile.train.max_length, source="narrow")
    records = [r for r in kept.records if dedup_key(task.input_text(r)) not in texts]
    if len(records) < n:
        raise SystemExit(f"--data narrow: only {len(records)} of {n} narrow tickets survived curation")
    return records[:n]


def configs_from_run_dir(run_dir: Path) -> dict:
    """The ``TrainConfig`` of lessons 03/04's runs in ``run_dir``, as their manifests record it."""
    from ftlib.core.runs import load_run

    return {method: asdict(load_run(run_dir / method).config) for method in ("lora", "qlora")}


def results_from_run_dir(run_dir: Path) -> dict:
    """Lesson 05's metrics on the generated test split and (where written) the field test, with lessons 03/04's
    run records, in this script's layout: ``{method: {"test", "field_test", "train_seconds", ...}}``."""
    from ftlib.core.runs import load_run

    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
    field_file = run_dir / "eval" / "field_metrics.json"
    field_metrics = json.loads(field_file.read_text()) if field_file.exists() else {}
    if not field_metrics:
        print(f"{field_file}: not there, so the field-test bar cannot be judged (re-run lesson 05)")
    results = {}
    for method, name in (("lora", "LoRA"), ("qlora", "QLoRA")):
        record = load_run(run_dir / method)
        results[method] = {
            "test": summary(metrics[name]),
            "field_test": summary(field_metrics[name]) if name in field_metrics else None,
            "train_seconds": record.metrics.train_seconds,
            "final_val_loss": record.metrics.final_val_loss,
        }
        print(
            f"{method}: trained {record.metrics.train_seconds:.0f} s ({record.config.max_steps} steps, "
            f"{record.torch_threads} threads), val loss {record.metrics.final_val_loss:.4f}, "
            f"{metrics[name]['examples']} test examples"
        )
    for name in ("base (zero-shot)", "base (few-shot)"):
        if name in metrics:
            results[name] = {
                "test": summary(metrics[name]),
                "field_test": summary(field_metrics[name]) if name in field_metrics else None,
            }
    return results


if __name__ == "__main__":
    main()
