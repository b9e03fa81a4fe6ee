"""Command line: ``python -m ftlib <command>`` for the same jobs the notebooks do."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import typing
from pathlib import Path

from ftlib.core.config import Decoding

if typing.TYPE_CHECKING:
    from ftlib.core.tasks import Task

NOTEBOOKS = (
    "01_base_model",
    "02_data_curation",
    "03_lora",
    "04_qlora",
    "05_evaluation",
    "06_what_matters",
    "07_after_training",
)


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
    write_json({"run": args.run, **where, **result}, args.output)  # atomic: no half-written file
    print(f"{label} on {source} ({len(records)} records)")
    for name, stats in result["metrics"].items():
        print(f"  {name:22s} {stats['value']:.3f}  [{stats['low']:.3f}, {stats['high']:.3f}]")
    if result["heldout"]:
        print(f"  {'perplexity':22s} {result['heldout']['perplexity']:.3f}")
    return 0


def config_field_types() -> dict[str, tuple[type, bool]]:
    """Each ``TrainConfig`` field's value type and whether it may be None, from the dataclass annotations."""
    from ftlib.core.config import TrainConfig

    result = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        options = [option for option in typing.get_args(hint) if option is not type(None)] or [hint]
        result[name] = (options[0], type(None) in typing.get_args(hint))
    return result


def config_value_parser(kind: type, optional: bool) -> typing.Callable[[str], object]:
    """An argparse ``type=`` for one field: ``kind(text)``, and "none" for None where the field allows it."""

    def parse(text: str) -> object:
        if optional and text.lower() == "none":
            return None
        try:
            return kind(text)
        except ValueError:
            expected = f"{kind.__name__}{' or none' if optional else ''}"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def add_train_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` field (``batch_size`` -> ``--batch-size``), so the two never drift apart.

    Flags left out stay out of the namespace (``argparse.SUPPRESS``): ``--config`` or the dataclass fills them.
    """
    from dataclasses import fields

    from ftlib.core.config import DATA_ORDERS, REPORTERS, SCHEDULERS, TrainConfig
    from ftlib.core.presets import METHODS, TARGET_MODULES

    choices = {
        "method": METHODS,
        "target_modules": tuple(TARGET_MODULES),
        "data_order": tuple(DATA_ORDERS),
        "lr_scheduler": SCHEDULERS,
        "report_to": REPORTERS,
    }
    types = config_field_types()
    group = parser.add_argument_group("hyperparameters (TrainConfig fields; they override --config)")
    for spec in fields(TrainConfig):
        flag = "--" + spec.name.replace("_", "-")
        kind, optional = types[spec.name]
        helptext = f"default: {spec.default}" + ("; 'none' unsets it" if optional else "")
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helptext)
        else:
            group.add_argument(
                flag,
                type=config_value_parser(kind, optional),
                default=argparse.SUPPRESS,
                choices=choices.get(spec.name),
                help=helptext,
                metavar=None if spec.name in choices else kind.__name__.upper(),
            )


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


def curriculum_kernel_manager(extra_env: dict[str, str]) -> type:
    """A Jupyter kernel manager class for the notebooks ftlib runs: ``extra_env`` added to the kernel's
    environment, and CurveZMQ transport encryption where the kernel supports it.

    It goes to nbclient as ``kernel_manager_class``, not as a ``km`` instance: nbclient then owns the
    kernel and shuts it down when the notebook ends (a passed-in manager's kernel would outlive it).

    ipykernel warns "Kernel is running over TCP without encryption" at every start of a kernel without
    Curve keys: a learner cannot act on it, and encrypting the local sockets (jupyter_client 8.10's
    ``transport_encryption``) is cheaper than hiding the warning. "auto" asks only for kernels whose spec
    declares Curve support (ipykernel's does); pyzmq builds without Curve keep the old plain transport.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    class CurriculumKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs) -> None:
            kwargs.setdefault("transport_encryption", "auto" if zmq.has("curve") else "disabled")
            super().__init__(**kwargs)

        async def start_kernel(self, **kwargs) -> None:
            kwargs["env"] = {**os.environ, **kwargs.get("env", {}), **extra_env}
            await super().start_kernel(**kwargs)

        async def _async_interrupt_kernel(self) -> None:
            # jupyter_client sends SIGINT before every shutdown request. The notebook has finished by then, but
            # on a loaded machine the kernel can still be flushing its last output, and ipykernel then logs
            # "KeyboardInterrupt caught in kernel" into the curriculum's output. Nothing is left to interrupt.
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return CurriculumKernelManager


def run_notebook(source: Path, output: Path, parameters: dict, mode: str) -> float:
    """Execute one notebook with papermill, showing its cells and the progress lines its kernel prints.

    The kernel gets ``FTLIB_PROGRESS=lines`` (or ``off`` when this process's progress is off): nobody
    watches its output live, so its training and generation progress comes as lines, which
    ``ftlib.core.progress.KernelLines`` passes on to this console; ``TQDM_DISABLE=1`` keeps other libraries'
    bars out of the executed notebook. Returns the seconds the notebook took.
    """
    import papermill

    from ftlib.core.progress import KernelLines, NotebookCells

    cells = NotebookCells(source.stem, mode)
    kernel_env = {"FTLIB_PROGRESS": "off" if mode == "off" else "lines", "TQDM_DISABLE": "1"}
    started, failed = time.perf_counter(), True
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=parameters,
            cwd=str(source.parent),
            kernel_name="python3",
            progress_bar=False,
            kernel_manager_class=curriculum_kernel_manager(kernel_env),
            stdout_file=KernelLines(cells.relay),
            stderr_file=KernelLines(cells.relay),
            on_notebook_start=cells.on_notebook_start,
            on_cell_execute=cells.on_cell_execute,
        )
        failed = False
    finally:
        seconds = round(time.perf_counter() - started, 1)
        cells.finish(seconds, failed)
    return seconds


def command_curriculum(args) -> int:
    """Run the curriculum's notebooks (or those of ``--only``: names or .ipynb paths) into the run folder."""
    from ftlib.core.fileio import write_json
    from ftlib.core.progress import progress_mode
    from ftlib.core.tasks import get_task, is_spec_path
    from ftlib.engine.profiles import project_root, resolve_profile, run_paths

    task = get_task(args.dataset)  # a bad spec fails before the first notebook
    # the notebooks run in their own folder: a spec path reaches them absolute
    dataset = str(Path(args.dataset).resolve()) if is_spec_path(args.dataset) else args.dataset
    profile = resolve_profile(args.profile)
    root = project_root()
    paths = run_paths(args.run_dir, profile, task.name)
    out_dir = paths["root"] / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = [
        Path(entry) if entry.endswith(".ipynb") else root / "notebooks" / f"{entry}.ipynb"
        for entry in args.only or NOTEBOOKS
    ]
    missing = [str(source) for source in sources if not source.is_file()]
    if missing:  # before the first notebook runs for minutes
        raise FileNotFoundError(f"no such notebook: {', '.join(missing)}")
    mode = progress_mode()
    executed = [out_dir / f"{source.stem}.ipynb" for source in sources]
    title = f"ftlib curriculum: {task.name} task, {profile.name} profile"
    timings = {}
    for source, output in zip(sources, executed):
        name = source.stem
        print(f"== {name} ({profile.name} profile) -> {output}", flush=True)
        started = time.perf_counter()
        try:
            timings[name] = run_notebook(
                source, output, {"profile": profile.name, "dataset": dataset, "run_dir": str(paths["root"])}, mode
            )
        except Exception:  # the failed notebook's partial output is a page too, marked failed; later ones "not run"
            if not args.no_html:
                seconds = {**timings, name: round(time.perf_counter() - started, 1)}
                try:
                    write_curriculum_html(executed, paths["root"] / "html", title, seconds, failed=name)
                except Exception as error:  # the notebook's error is the one to see
                    print(f"warning: no HTML pages ({type(error).__name__}: {error})", file=sys.stderr)
            raise
    write_json(timings, paths["root"] / "curriculum_timings.json")
    print(f"All notebooks ran; outputs under {paths['root']}")
    if not args.no_html:
        write_curriculum_html(executed, paths["root"] / "html", title, timings)
    return 0


def write_curriculum_html(
    executed: list[Path], folder: Path, title: str, timings: dict[str, float], failed: str | None = None
) -> Path:
    """The executed notebooks as HTML pages under ``folder`` (``ftlib.course.report.export_html``); prints the index."""
    from ftlib.course.report import export_html

    index = export_html(executed, folder, title, timings, failed)
    print(f"HTML pages of the executed notebooks: {index}", flush=True)
    return index


def add_split_flags(parser: argparse.ArgumentParser, data_flag: str, prefix: str) -> None:
    """``--{prefix}split`` and ``--{prefix}revision``: which split and version of ``data_flag``'s dataset to read."""
    parser.add_argument(
        f"--{prefix}split",
        metavar="SPLIT",
        help=f"the split of {data_flag} when it is a saved folder or a hub dataset (default: train)",
    )
    parser.add_argument(
        f"--{prefix}revision",
        metavar="REV",
        help=f"the branch, tag or commit of {data_flag} when it is a hub dataset id (default: the main branch)",
    )


def build_parser(train_flags: bool = True) -> argparse.ArgumentParser:
    """The ``python -m ftlib`` parser.

    Args:
        train_flags: add the ``train`` command's hyperparameter flags, which import torch (seconds);
            ``main`` leaves them out unless the command is ``train``.
    """
    from ftlib.core.tasks import TASKS

    data_help = "a JSONL, JSON, CSV or Parquet file, a folder saved by datasets, or a hub dataset id"
    task_help = f"a built-in task ({', '.join(TASKS)}) or the path of a task spec file (.yaml)"
    parser = argparse.ArgumentParser(prog="python -m ftlib", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    training = commands.add_parser(
        "train",
        help="fine-tune a base model on your data (also under torchrun / accelerate launch)",
        description="Fine-tune with LoRA, QLoRA or full fine-tuning and write adapter/, history.json and "
        "manifest.json to --output. Under `torchrun --nproc_per_node N` every process runs this "
        "command and trains with DDP; the global batch is batch-size x grad-accum x N.",
    )
    training.add_argument("--data", required=True, type=Path, help=f"training data: {data_help}")
    training.add_argument("--val", required=True, type=Path, help=f"validation data: {data_help}")
    add_split_flags(training, "--data", "")
    add_split_flags(training, "--val", "val-")
    training.add_argument("--output", required=True, type=Path, help="run folder to write")
    training.add_argument(
        "--base-model",
        default="smollm2-135m-instruct",
        help="registry name, local folder or hub id (default: %(default)s)",
    )
    training.add_argument(
        "--task",
        "--dataset",
        dest="dataset",
        metavar="TASK",
        default="support_tickets",
        help=f"the task the records follow: {task_help} (default: %(default)s)",
    )
    training.add_argument(
        "--config", type=Path, help="JSON of TrainConfig fields, or a run's manifest.json to repeat its hyperparameters"
    )
    training.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    training.add_argument("--source", default="auto", choices=["auto", "hub", "embedded"])
    training.add_argument("--resume", action="store_true", help="continue the interrupted run from its last checkpoint")
    training.add_argument("--adapter", type=Path, help="keep training this saved adapter folder instead of a new one")
    training.add_argument(
        "--drop-invalid-labels",
        action="store_true",
        help="drop records whose label is outside the dataset's label sets (default: refuse them)",
    )
    if train_flags:
        add_train_config_flags(training)
    training.set_defaults(handler=command_train)

    merge = commands.add_parser("merge", help="fold a run's adapter into its full-precision base and save it")
    merge.add_argument("--run", required=True, type=Path, help="LoRA or QLoRA run folder (with manifest.json)")
    merge.add_argument("--output", required=True, type=Path, help="folder for the merged model")
    merge.add_argument("--source", default="auto", choices=["auto", "hub", "embedded"])
    merge.set_defaults(handler=command_merge)

    export = commands.add_parser(
        "export",
        help="merge a run, write GGUF + Ollama Modelfile, and check that they answer as the adapter does",
        description="Merge a LoRA/QLoRA run into its full-precision base, write OUTPUT/model.gguf (Llama "
        "models only) and OUTPUT/Modelfile, compare logits and greedy answers adapter -> merged -> GGUF on "
        "--records (or a few fixed prompts), print a table and write OUTPUT/export_report.json. "
        "Exit status 1 when a parity check fails.",
    )
    export.add_argument("--run", required=True, type=Path, help="run folder (with manifest.json)")
    export.add_argument("--output", required=True, type=Path, help="a new or empty folder for the exported files")
    export.add_argument("--records", type=Path, help=f"records to compare answers on: {data_help}")
    export.add_argument("--limit", type=int, help="compare on the first N records only")
    export.add_argument(
        "--task",
        "--dataset",
        dest="task",
        metavar="TASK",
        default="support_tickets",
        help=f"{task_help}; its instruction is the Modelfile's SYSTEM (default: %(default)s)",
    )
    export.add_argument("--dtype", default="f32", choices=["f32", "f16"], help="GGUF weights (default: %(default)s)")
    export.add_argument("--max-new-tokens", type=int, default=96)
    export.add_argument("--source", default="auto", choices=["auto", "hub", "embedded"])
    export.add_argument("--overwrite", action="store_true", help="write into a non-empty --output")
    export.set_defaults(handler=command_export)

    fetch = commands.add_parser("fetch-model", help="fetch and convert the embedded default model (once)")
    fetch.add_argument("name", nargs="?", default="smollm2-135m-instruct")
    fetch.set_defaults(handler=command_fetch_model)

    samples = commands.add_parser("make-samples", help="regenerate data/samples from the seeded generators")
    samples.add_argument("--out", default="data/samples")
    samples.add_argument("--seed", type=int, default=1234)
    samples.set_defaults(handler=command_make_samples)

    for name, handler, helptext in (
        ("evaluate", command_evaluate, "score a run or base model on data with reference answers"),
        ("generate", command_generate, "write a run's or base model's answers"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--run", required=True, help="run folder (with manifest.json) or base model name/path")
        sub.add_argument("--data", required=True, type=Path, help=f"records with the task's fields: {data_help}")
        add_split_flags(sub, "--data", "")
        sub.add_argument("--output", required=True, type=Path)
        sub.add_argument(
            "--task",
            "--dataset",
            dest="task",
            metavar="TASK",
            default="support_tickets",
            help=f"{task_help} (default: %(default)s)",
        )
        sub.add_argument("--batch-size", type=int, default=16)
        sub.add_argument("--max-new-tokens", type=int, default=96)
        sub.add_argument("--source", default="auto", choices=["auto", "hub", "embedded"])
        if name == "evaluate":
            sub.add_argument(
                "--drop-invalid-labels",
                action="store_true",
                help="drop records whose label is outside the task's label sets (default: refuse them)",
            )
        sub.set_defaults(handler=handler)

    publish = commands.add_parser(
        "publish", help="stamp [tool.ftlib.publish] (repository, ref) into the notebooks' badges and setup cells"
    )
    publish.add_argument("--check", action="store_true", help="only list what disagrees; exit 1 if anything does")
    publish.set_defaults(handler=command_publish)

    curriculum = commands.add_parser("curriculum", help="run every notebook with papermill")
    curriculum.add_argument("--profile", default="cpu", help="smoke | cpu | gpu | auto")
    curriculum.add_argument(
        "--task",
        "--dataset",
        dest="dataset",
        metavar="TASK",
        default="support_tickets",
        help=f"{task_help} (default: %(default)s)",
    )
    curriculum.add_argument("--run-dir", default=None)
    curriculum.add_argument(
        "--only", nargs="*", help="run only these notebooks: names without .ipynb, or paths to .ipynb files"
    )
    curriculum.add_argument(
        "--no-html",
        action="store_true",
        help="skip the HTML pages of the executed notebooks (default: <run dir>/html/index.html and one page each)",
    )
    curriculum.set_defaults(handler=command_curriculum)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(train_flags=argv[:1] == ["train"]).parse_args(argv)
    from ftlib.data.records import DataError

    try:
        return args.handler(args)
    except (DataError, KeyError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
