"""Command line: ``python -m ftlib <command>`` for the same jobs the notebooks do."""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from dataclasses import asdict
from pathlib import Path

from ftlib.core.config import Decoding
from ftlib.core.runtime import catch_interrupts
from ftlib.course.curriculum import command_curriculum
from ftlib.course.parser import build_parser, config_field_types

if typing.TYPE_CHECKING:
    pass


def command_merge(args) -> int:
    from ftlib.core.runs import MANIFEST, load_run
    from ftlib.course import preflight

    checks = preflight.Preflight()
    if not args.run.is_dir():
        checks.problems.append(f"no run folder named {args.run}")
    elif not (args.run / MANIFEST).exists():
        checks.add(f"--run {args.run}", f"no {MANIFEST} there: --run must be a LoRA or QLoRA run folder")
    elif (record := load_run(args.run)).method == "full":
        checks.add(f"--run {args.run}", "a full fine-tune: its model/ folder is already a plain model")
    else:
        preflight.run_folder(checks, "--run", args.run)
    preflight.output_run_folder(
        checks, "--output", args.output, {"--run": args.run}, args.overwrite, marker="merge.json"
    )
    checks.finish()
    from ftlib.engine.adapters import merge_and_export

    output = merge_and_export(record.base_model, args.run / record.weights_folder, args.output, source=args.source)
    print(f"merged {record.method} adapter of {record.base_model} into a full-precision model: {output}")
    return 0


def command_export(args) -> int:
    from ftlib.core.runs import MANIFEST
    from ftlib.course import preflight
    from ftlib.engine.export import REPORT_NAME, ship

    checks = preflight.Preflight()
    if not (args.run / MANIFEST).exists():
        checks.add(f"--run {args.run}", f"{args.run / MANIFEST} not found: --run must be a training run folder")
    else:
        preflight.run_folder(checks, "--run", args.run)
    task = preflight.task_of(checks, args.task)
    records = None
    if args.records:
        records = preflight.records_to_answer(checks, "--records", args.records, task)
    preflight.at_least(checks, "--limit", args.limit)
    preflight.at_least(checks, "--max-new-tokens", args.max_new_tokens)
    checks.finish()
    if records is not None:
        records = list(records)[: args.limit] if args.limit else list(records)
    try:
        report = ship(
            args.run,
            args.output,
            records,
            task,
            dtype=args.dtype,
            decoding=Decoding(max_new_tokens=args.max_new_tokens),
            source=args.source,
            overwrite=args.overwrite,
        )
    except FileExistsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = report.rows()
    widths = {key: max(len(key), *(len(str(row[key])) for row in rows)) for key in rows[0]}
    print("  ".join(key.ljust(width) for key, width in widths.items()))
    for row in rows:
        print("  ".join(str(row[key]).ljust(width) for key, width in widths.items()))
    print(f"wrote {report.gguf} ({report.gguf_dtype}), {report.modelfile} and {args.output / REPORT_NAME}")
    if not report.ok:
        print("export parity FAILED: see the rows marked False", file=sys.stderr)
    return 0 if report.ok else 1


def command_fetch_model(args) -> int:
    from ftlib.engine.models import ensure_embedded_model

    print(ensure_embedded_model(args.name))
    return 0


def command_make_samples(args) -> int:
    """Generate the samples beside nothing, compare, then write: a file in ``--out`` that differs from what the seed
    makes (an edit, another seed) is replaced only with ``--overwrite``; an identical one is left alone."""
    import filecmp
    import shutil
    import tempfile

    from ftlib.core.fileio import atomic_path
    from ftlib.course.preflight import Preflight, output_file
    from ftlib.data.samples import write_samples

    out = Path(args.out)
    checks = Preflight()
    if out.exists() and not out.is_dir():
        checks.add(f"--out {out}", "is a file; the samples are a folder of files")
    checks.finish()
    with tempfile.TemporaryDirectory() as scratch:
        made = write_samples(scratch, seed=args.seed)
        targets = {path: out / path.name for path in made}
        changed = {
            path: target
            for path, target in targets.items()
            if not (target.is_file() and filecmp.cmp(path, target, shallow=False))
        }
        for target in changed.values():
            output_file(checks, "--out", target, {}, args.overwrite)
        checks.finish()
        for path, target in changed.items():
            with atomic_path(target) as partial:
                shutil.copyfile(path, partial)
    for path, target in targets.items():
        print(f"{'wrote' if path in changed else 'unchanged'} {target}")
    return 0


def command_publish(args) -> int:
    from ftlib.course.publish import check, read_publication, stamp
    from ftlib.engine.profiles import project_root

    root = project_root()
    publication = read_publication(root)
    if args.check:
        problems = check(root)
        print("\n".join(problems) or f"badges and setup cells agree with {publication.repository} @ {publication.ref}")
        return 1 if problems else 0
    changed = stamp(root)
    print(
        f"stamped {publication.repository} @ {publication.ref} into "
        + (", ".join(str(path.relative_to(root)) for path in changed) or "nothing: already up to date")
    )
    return 0


def scoring_preflight(args, labels: bool):
    """``generate`` and ``evaluate``: the task, every record, the settings, the output and the run, checked before
    anything loads; then every prompt against the model's context. Returns ``(task, records)``."""
    from ftlib.course import preflight

    checks = preflight.Preflight()
    task = preflight.task_of(checks, args.task)
    records = preflight.records_to_answer(
        checks,
        "--data",
        args.data,
        task,
        args.split,
        args.revision,
        labels=labels,
        drop_invalid_labels=getattr(args, "drop_invalid_labels", False),
    )
    preflight.at_least(checks, "--batch-size", args.batch_size)
    preflight.at_least(checks, "--max-new-tokens", args.max_new_tokens)
    inputs = {"--data": args.data, "--run": Path(args.run)}
    preflight.output_file(checks, "--output", args.output, inputs, args.overwrite)
    preflight.run_folder(checks, "--run", args.run)
    checks.finish()
    records = preflight.fit_context(
        checks, records, task, args.run, args.source, args.max_new_tokens, args.truncate_long_inputs
    )
    checks.finish()
    return task, records


def command_generate(args) -> int:
    task, records = scoring_preflight(args, labels=False)
    from ftlib.data.records import write_jsonl
    from ftlib.engine.adapters import load_for_eval
    from ftlib.engine.inference import generate

    model, tokenizer, label = load_for_eval(args.run, args.source)
    answers = generate(
        model, tokenizer, [task.prompt_messages(r) for r in records], Decoding(args.batch_size, args.max_new_tokens)
    )
    write_jsonl([{"id": r.get("id"), "prediction": a} for r, a in zip(records, answers)], args.output)
    print(f"{label}: wrote {len(answers)} predictions to {args.output}")
    return 0


def command_evaluate(args) -> int:
    task, records = scoring_preflight(args, labels=True)
    from ftlib.core.fileio import write_json
    from ftlib.engine.adapters import load_for_eval
    from ftlib.measure.evaluate import evaluate_model

    model, tokenizer, label = load_for_eval(args.run, args.source)
    result = evaluate_model(model, tokenizer, records, task, Decoding(args.batch_size, args.max_new_tokens))
    where = {"data": str(args.data)} | {key: getattr(args, key) for key in ("split", "revision") if getattr(args, key)}
    write_json({"run": args.run, **where, **asdict(result)}, args.output)  # atomic: no half-written file
    print(f"{label} on {records.source} ({len(records)} records)")
    for name, stat in result.metrics.items():
        print(f"  {name:22s} {stat.value:.3f}  {stat.interval_text(3)}")
    if result.heldout:
        print(f"  {'perplexity':22s} {result.heldout.perplexity:.3f}")
    return 0


def read_config_file(path: Path) -> dict:
    """TrainConfig values from a JSON object of its fields, or from a run's manifest.json (its "config").

    Raises:
        DataError: the file is missing or not JSON, or a key is not a field or has a value of the wrong type.
    """
    from dataclasses import asdict

    from ftlib.data.records import DataError

    if not path.is_file():
        raise DataError(path, None, None, "file not found")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(path, None, None, f"not valid JSON ({error})") from None
    if isinstance(values, dict) and isinstance(values.get("config"), dict) and "base_model" in values:
        from ftlib.core.runs import record_from_dict

        values = asdict(record_from_dict(values, str(path)).config)  # a run manifest: the same hyperparameters
    if not isinstance(values, dict):
        raise DataError(path, None, None, f"expected a JSON object of TrainConfig fields, got {type(values).__name__}")
    types = config_field_types()
    for key, value in values.items():
        if key not in types:
            raise DataError(path, None, key, f"not a TrainConfig field (fields: {', '.join(types)})")
        kind, optional = types[key]
        fits = (
            (value is None and optional)
            or (isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool))
            or (kind is float and isinstance(value, int) and not isinstance(value, bool))
        )
        if not fits:
            raise DataError(
                path, None, key, f"expected {kind.__name__}{' or null' if optional else ''}, got {json.dumps(value)}"
            )
    return values


def is_main_process() -> bool:
    """True outside a distributed launch, and on rank 0 under ``torchrun``/``accelerate launch``."""
    return int(os.environ.get("RANK", "0") or 0) == 0


LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules")


def train_preflight(args: argparse.Namespace):
    """Every check ``train`` can make before torch or a model loads, reported at once:
    the config and its flags, flags that contradict each other, the task and both data sources, the base model,
    ``--adapter``, ``--output``, ``--resume`` and ``--device``. Returns ``(config, task, train_records, val_records)``.
    """
    from dataclasses import fields

    from ftlib.core.config import TrainConfig
    from ftlib.core.runs import MANIFEST, last_complete_checkpoint, scratch_folder
    from ftlib.course import preflight
    from ftlib.data.records import DataError

    checks = preflight.Preflight()
    values = {}
    if args.config:
        try:
            values = read_config_file(args.config)
        except DataError as error:
            checks.problems.append(str(error))
    given = vars(args)
    flags = {spec.name: given[spec.name] for spec in fields(TrainConfig) if spec.name in given}
    config = None
    with checks.checking():
        config = TrainConfig(**(values | flags))
        config.validate()
    if config is not None and config.method == "full":
        lora = [f"--{name.replace('_', '-')}" for name in LORA_FIELDS if name in flags]
        if lora:
            checks.add(", ".join(lora), "LoRA settings, but --method full trains every weight and uses none of them")
        if args.adapter:
            checks.add("--adapter", "continues a LoRA or QLoRA adapter; --method full has none")
    if args.resume and args.adapter:
        checks.add("--resume with --adapter", "pick one: --resume continues the interrupted run in --output")
    task = preflight.task_of(checks, args.dataset)
    drop = args.drop_invalid_labels
    train_records = preflight.records_to_answer(
        checks, "--data", args.data, task, args.split, args.revision, drop_invalid_labels=drop, training=True
    )
    val_records = preflight.records_to_answer(
        checks, "--val", args.val, task, args.val_split, args.val_revision, drop_invalid_labels=drop, training=True
    )
    base = Path(args.base_model).expanduser()
    if base.is_dir():
        checks.problems += preflight.model_folder_problems(base)
    else:
        with checks.checking():
            preflight.check_run_source(args.base_model)
    if args.adapter:
        adapter = args.adapter / "adapter" if (args.adapter / MANIFEST).is_file() else args.adapter
        if not (adapter / "adapter_config.json").is_file() and adapter.is_dir():
            checks.add(f"--adapter {args.adapter}", "no adapter_config.json there (pass a run's adapter/ folder)")
        else:
            checks.problems += preflight.adapter_folder_problems(adapter)
    inputs = {"--data": args.data, "--val": args.val, "--config": args.config, "--adapter": args.adapter}
    preflight.output_run_folder(checks, "--output", args.output, inputs, args.overwrite)
    if args.resume and last_complete_checkpoint(scratch_folder(args.output) / "trainer") is None:
        checks.add(
            "--resume",
            f"nothing to resume: {scratch_folder(args.output) / 'trainer'} holds no complete checkpoint; "
            "run without --resume",
        )
    preflight.device(checks, "--device", args.device)
    checks.finish()
    return config, task, train_records, val_records


def command_train(args: argparse.Namespace) -> int:
    """Train from data files or datasets with TrainConfig from --config and flags; rank 0 prints the summary."""
    config, task, train_records, val_records = train_preflight(args)
    from ftlib.core.runtime import pick_device
    from ftlib.engine.train import train

    device = pick_device(None if args.device == "auto" else args.device)
    result = train(
        args.base_model,
        train_records,
        val_records,
        args.output,
        config=config,
        task=task,
        device=device,
        source=args.source,
        resume=args.resume,
        adapter=args.adapter,
    )
    if is_main_process():
        record = result.record
        metrics, measured = record.metrics, record.memory.measured
        cuda = (
            f", CUDA max allocated {measured.cuda_max_allocated_mb} MB"
            if measured.cuda_max_allocated_mb is not None
            else ""
        )
        print(
            f"{record.method} run of {record.base_model} on {record.device}: "
            f"{record.world_size} process(es), global batch {record.global_batch_size}"
        )
        print(f"  final val loss     {metrics.final_val_loss:.4f}")
        print(f"  train loss         {metrics.train_loss:.4f}")
        print(
            f"  train tokens/s     {metrics.train_tokens_per_second}  ({metrics.train_tokens} tokens "
            f"in {metrics.train_seconds} s)"
        )
        print(f"  peak memory        {measured.peak_rss_mb} MB RSS (main process){cuda}")
        print(f"  run folder         {result.output_dir}  ({record.weights_folder}/, history.json, manifest.json)")
    return 0


COMMANDS = {
    "train": command_train,
    "merge": command_merge,
    "export": command_export,
    "fetch-model": command_fetch_model,
    "make-samples": command_make_samples,
    "publish": command_publish,
    "evaluate": command_evaluate,
    "generate": command_generate,
    "curriculum": command_curriculum,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's error (bad input, a refused output) is one message and exit status 2, with no
    traceback; so is Ctrl-C (130), which leaves every finished file in place."""
    argv = sys.argv[1:] if argv is None else argv
    with catch_interrupts():
        return _run(argv)


def _run(argv: list[str]) -> int:
    """``main`` inside its Ctrl-C handling: the command's exit status."""
    try:
        args = build_parser(train_flags=argv[:1] == ["train"], description=__doc__).parse_args(argv)
        from ftlib.course.preflight import USER_ERRORS, PreflightError

        try:
            return COMMANDS[args.command](args)
        except PreflightError as error:
            print(error.report(), file=sys.stderr)
            return 2
        except USER_ERRORS as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            print(f"error: {message}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        resume = " (a training run continues with --resume)" if argv[:1] == ["train"] else ""
        print(f"\ninterrupted: stopped before finishing; no output was replaced{resume}", file=sys.stderr)
        return 130
