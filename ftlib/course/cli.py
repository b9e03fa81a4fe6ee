"""Command line: ``python -m ftlib <command>`` for the same jobs the notebooks do."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import typing
from dataclasses import asdict
from pathlib import Path

from ftlib.core.config import Decoding
from ftlib.course.curriculum import command_curriculum
from ftlib.course.parser import build_parser, config_field_types

if typing.TYPE_CHECKING:
    from ftlib.core.tasks import Task


def check_run_source(run: str) -> None:
    """Refuse, before any model loads, a ``--run`` that is no folder, registry name or hub model.

    Only a string shaped like a hub id (``name`` or ``owner/name``, not starting with ``runs``, ``.`` or ``~``)
    is looked up: on the hub when it is reachable, else in the local hub cache. A missing path is never
    tried on the hub.

    Raises:
        FileNotFoundError: one line naming ``run``.
        ftlib.core.runs.ManifestError: a run folder whose manifest cannot be read.
    """
    from ftlib.core.runs import MANIFEST, load_run

    folder = Path(run).expanduser()
    if folder.is_dir():
        if (folder / MANIFEST).exists():
            load_run(folder)  # an unreadable or unknown-version manifest fails here, not after loading a model
        return
    from ftlib.engine.models import REGISTRY, hub_reachable

    if run in REGISTRY:
        return
    if re.fullmatch(r"[\w.-]+(/[\w.-]+)?", run) and not run.startswith(("runs", ".", "~")):
        from huggingface_hub import repo_exists, try_to_load_from_cache

        if hub_reachable():
            try:
                if repo_exists(run):
                    return
            except Exception:  # an invalid id or a network failure: neither makes it loadable
                pass
        elif isinstance(try_to_load_from_cache(run, "config.json"), str):  # offline, but in the hub cache
            return
    raise FileNotFoundError(f"no run folder or registry model named {run}")


def command_merge(args) -> int:
    from ftlib.core.runs import MANIFEST, load_run
    from ftlib.engine.adapters import merge_and_export

    manifest_path = args.run / MANIFEST
    if not args.run.is_dir():
        print(f"error: no run folder named {args.run}", file=sys.stderr)
        return 2
    if not manifest_path.exists():
        print(f"error: {manifest_path} not found: --run must be a LoRA or QLoRA run folder", file=sys.stderr)
        return 2
    record = load_run(args.run)
    if record.method == "full":
        print(f"error: {args.run} is a full fine-tune: its model/ folder is already a plain model", file=sys.stderr)
        return 2
    output = merge_and_export(record.base_model, args.run / record.weights_folder, args.output, source=args.source)
    print(f"merged {record.method} adapter of {record.base_model} into a full-precision model: {output}")
    return 0


def command_export(args) -> int:
    from ftlib.core.runs import MANIFEST
    from ftlib.core.tasks import get_task
    from ftlib.data.records import check_input, numbered, read_records
    from ftlib.engine.export import REPORT_NAME, ship

    if not (args.run / MANIFEST).exists():
        print(f"error: {args.run / MANIFEST} not found: --run must be a training run folder", file=sys.stderr)
        return 2
    task = get_task(args.task)
    records = None
    if args.records:
        records = read_records(args.records)
        for line, record in numbered(records):
            check_input(record, task, records.source, line)  # before any model loads
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
    from ftlib.data.samples import write_samples

    for path in write_samples(args.out, seed=args.seed):
        print(f"wrote {path}")
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


def command_generate(args) -> int:
    from ftlib.core.tasks import get_task
    from ftlib.data.records import check_input, numbered, read_records, write_jsonl
    from ftlib.engine.adapters import load_for_eval
    from ftlib.engine.inference import generate

    task = get_task(args.task)
    records = read_records(args.data, args.split, args.revision)
    for line, record in numbered(records):
        check_input(record, task, records.source, line)  # before any model loads
    check_run_source(args.run)
    model, tokenizer, label = load_for_eval(args.run, args.source)
    answers = generate(
        model, tokenizer, [task.prompt_messages(r) for r in records], Decoding(args.batch_size, args.max_new_tokens)
    )
    write_jsonl([{"id": r.get("id"), "prediction": a} for r, a in zip(records, answers)], args.output)
    print(f"{label}: wrote {len(answers)} predictions to {args.output}")
    return 0


def command_evaluate(args) -> int:
    from ftlib.core.fileio import write_json
    from ftlib.core.tasks import get_task
    from ftlib.data.records import check_input, numbered, read_records
    from ftlib.engine.adapters import load_for_eval
    from ftlib.measure.evaluate import evaluate_model

    task = get_task(args.task)
    records = read_records(args.data, args.split, args.revision)
    source = records.source  # the file, or name[split] for a saved or hub dataset
    for line, record in numbered(records):
        check_input(record, task, records.source, line)  # before any model loads
    records = checked_labels(records, task, records.source, args.drop_invalid_labels)
    check_run_source(args.run)
    model, tokenizer, label = load_for_eval(args.run, args.source)
    result = evaluate_model(model, tokenizer, records, task, Decoding(args.batch_size, args.max_new_tokens))
    where = {"data": str(args.data)} | {key: getattr(args, key) for key in ("split", "revision") if getattr(args, key)}
    write_json({"run": args.run, **where, **asdict(result)}, args.output)  # atomic: no half-written file
    print(f"{label} on {source} ({len(records)} records)")
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


def checked_labels(records: list[dict], task: Task, path: Path, drop: bool) -> list[dict]:
    """The records whose labels are in the task's label sets; with ``drop``, the others are left out and counted.

    Raises:
        DataError: an out-of-schema label (file, line, field) without ``drop``, or nothing left after dropping.
    """
    from ftlib.data.records import DataError, check_labels

    kept, dropped = check_labels(records, task, str(path), drop)
    if dropped:
        print(
            f"{path}: dropped {dropped} of {len(records)} record(s) with a label outside the {task.name} label sets"
            " (--drop-invalid-labels)"
        )
        if not kept:
            raise DataError(path, None, None, "no records left after dropping those with invalid labels")
    return kept


def read_training_file(
    path: Path,
    task: Task,
    drop_invalid_labels: bool = False,
    split: str | None = None,
    revision: str | None = None,
) -> list[dict]:
    """Read data (``ftlib.data.records.read_records``: a file, a saved folder's or a hub dataset's ``split`` at
    ``revision``) and check that every record can become a training example, before any model loads.

    A label outside the task's label sets is an error, or with ``drop_invalid_labels`` a dropped record.
    """
    from ftlib.data.records import numbered, read_records, to_messages

    records = read_records(path, split, revision)
    for line, record in numbered(records):
        to_messages(record, task, records.source, line)
    return checked_labels(records, task, records.source, drop_invalid_labels)


def is_main_process() -> bool:
    """True outside a distributed launch, and on rank 0 under ``torchrun``/``accelerate launch``."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def command_train(args: argparse.Namespace) -> int:
    """Train from data files or datasets with TrainConfig from --config and flags; rank 0 prints the summary."""
    from dataclasses import fields

    from ftlib.core.config import TrainConfig
    from ftlib.core.runtime import pick_device
    from ftlib.core.tasks import get_task
    from ftlib.engine.train import train

    values = read_config_file(args.config) if args.config else {}
    given = vars(args)
    values |= {spec.name: given[spec.name] for spec in fields(TrainConfig) if spec.name in given}
    config = TrainConfig(**values)
    config.validate()  # before reading data or loading a model: a typo fails in a second
    if args.adapter and not (args.adapter / "adapter_config.json").is_file():
        print(
            f"error: --adapter {args.adapter}: no adapter_config.json there (pass a run's adapter/ folder)",
            file=sys.stderr,
        )
        return 2
    task = get_task(args.dataset)
    train_records = read_training_file(args.data, task, args.drop_invalid_labels, args.split, args.revision)
    val_records = read_training_file(args.val, task, args.drop_invalid_labels, args.val_split, args.val_revision)
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
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(train_flags=argv[:1] == ["train"], description=__doc__).parse_args(argv)
    from ftlib.data.records import DataError

    try:
        return COMMANDS[args.command](args)
    except (DataError, KeyError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
