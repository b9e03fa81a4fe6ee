"""The ``python -m ftlib`` parser: one small function per command, and one flag per ``TrainConfig`` field.

It only parses: ``ftlib.course.cli.COMMANDS`` maps each command's name to the function that runs it.
"""

from __future__ import annotations

import argparse
import typing
from pathlib import Path

DATA_HELP = "a JSONL, JSON, CSV or Parquet file, a folder saved by datasets, or a hub dataset id"
SOURCES = ("auto", "hub", "embedded")


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
        helptext = f"{spec.metadata['help']} (default: {spec.default}" + ("; 'none' unsets it)" if optional else ")")
        helptext = helptext.replace("%", "%%")  # argparse formats help with %
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


def task_help() -> str:
    from ftlib.core.tasks import TASKS

    return f"a built-in task ({', '.join(TASKS)}) or the path of a task spec file (.yaml)"


def add_task_flag(parser: argparse.ArgumentParser, dest: str, about: str = "") -> None:
    """``--task`` (alias ``--dataset``): a built-in task or a spec file, stored as ``dest``."""
    parser.add_argument(
        "--task",
        "--dataset",
        dest=dest,
        metavar="TASK",
        default="support_tickets",
        help=f"{about}{task_help()} (default: %(default)s)",
    )


def add_train(commands, train_flags: bool) -> None:
    training = commands.add_parser(
        "train",
        help="fine-tune a base model on your data (also under torchrun / accelerate launch)",
        description="Fine-tune with LoRA, QLoRA or full fine-tuning and write adapter/, history.json and "
        "manifest.json to --output. Under `torchrun --nproc_per_node N` every process runs this "
        "command and trains with DDP; the global batch is batch-size x grad-accum x N.",
    )
    training.add_argument("--data", required=True, type=Path, help=f"training data: {DATA_HELP}")
    training.add_argument("--val", required=True, type=Path, help=f"validation data: {DATA_HELP}")
    add_split_flags(training, "--data", "")
    add_split_flags(training, "--val", "val-")
    training.add_argument("--output", required=True, type=Path, help="run folder to write (a new or empty folder)")
    training.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in --output (kept as <output>.previous until the next overwrite)",
    )
    training.add_argument(
        "--base-model",
        default="smollm2-135m-instruct",
        help="registry name, local folder or hub id (default: %(default)s)",
    )
    add_task_flag(training, "dataset", "the task the records follow: ")
    training.add_argument(
        "--config", type=Path, help="JSON of TrainConfig fields, or a run's manifest.json to repeat its hyperparameters"
    )
    training.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    training.add_argument("--source", default="auto", choices=SOURCES)
    training.add_argument(
        "--resume", action="store_true", help="continue the interrupted run in --output from its last checkpoint"
    )
    training.add_argument("--adapter", type=Path, help="keep training this saved adapter folder instead of a new one")
    training.add_argument(
        "--drop-invalid-labels",
        action="store_true",
        help="drop records whose label is outside the dataset's label sets (default: refuse them)",
    )
    if train_flags:
        add_train_config_flags(training)


def add_merge(commands) -> None:
    merge = commands.add_parser("merge", help="fold a run's adapter into its full-precision base and save it")
    merge.add_argument("--run", required=True, type=Path, help="LoRA or QLoRA run folder (with manifest.json)")
    merge.add_argument("--output", required=True, type=Path, help="folder for the merged model (a new folder)")
    merge.add_argument(
        "--overwrite", action="store_true", help="replace an earlier merge in --output (kept as <output>.previous)"
    )
    merge.add_argument("--source", default="auto", choices=SOURCES)


def add_export(commands) -> None:
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
    export.add_argument("--records", type=Path, help=f"records to compare answers on: {DATA_HELP}")
    export.add_argument("--limit", type=int, help="compare on the first N records only")
    add_task_flag(export, "task", "its instruction is the Modelfile's SYSTEM; ")
    export.add_argument("--dtype", default="f32", choices=["f32", "f16"], help="GGUF weights (default: %(default)s)")
    export.add_argument("--max-new-tokens", type=int, default=96)
    export.add_argument("--source", default="auto", choices=SOURCES)
    export.add_argument("--overwrite", action="store_true", help="write into a non-empty --output")


def add_scoring(commands, name: str, helptext: str) -> None:
    """``evaluate`` and ``generate``: a run or base model answering records."""
    sub = commands.add_parser(name, help=helptext)
    sub.add_argument("--run", required=True, help="run folder (with manifest.json) or base model name/path")
    sub.add_argument("--data", required=True, type=Path, help=f"records with the task's fields: {DATA_HELP}")
    add_split_flags(sub, "--data", "")
    sub.add_argument(
        "--output",
        required=True,
        type=Path,
        help="the " + ("metrics JSON" if name == "evaluate" else "predictions JSONL") + " file to write (a new file)",
    )
    sub.add_argument("--overwrite", action="store_true", help="replace --output if it exists (never an input file)")
    add_task_flag(sub, "task")
    sub.add_argument("--batch-size", type=int, default=16, help="prompts per batch (default: %(default)s)")
    sub.add_argument(
        "--max-new-tokens", type=int, default=96, help="tokens each answer may take (default: %(default)s)"
    )
    sub.add_argument(
        "--truncate-long-inputs",
        action="store_true",
        help="cut inputs whose prompt does not fit the model's context, from the end, and count them "
        "(default: refuse them)",
    )
    sub.add_argument("--source", default="auto", choices=SOURCES)
    if name == "evaluate":
        sub.add_argument(
            "--drop-invalid-labels",
            action="store_true",
            help="drop records whose label is outside the task's label sets (default: refuse them)",
        )


def add_curriculum(commands) -> None:
    curriculum = commands.add_parser("curriculum", help="run every notebook with papermill")
    curriculum.add_argument("--profile", default="cpu", help="smoke | cpu | gpu | auto")
    add_task_flag(curriculum, "dataset")
    curriculum.add_argument("--run-dir", default=None)
    curriculum.add_argument(
        "--only", nargs="*", help="run only these notebooks: names without .ipynb, or paths to .ipynb files"
    )
    curriculum.add_argument(
        "--no-html",
        action="store_true",
        help="skip the HTML pages of the executed notebooks (default: <run dir>/html/index.html and one page each)",
    )


def add_small_commands(commands) -> None:
    """The set-up and maintenance commands: fetch-model, make-samples, publish."""
    fetch = commands.add_parser("fetch-model", help="fetch and convert the embedded default model (once)")
    fetch.add_argument("name", nargs="?", default="smollm2-135m-instruct")
    samples = commands.add_parser("make-samples", help="regenerate data/samples from the seeded generators")
    samples.add_argument("--out", default="data/samples")
    samples.add_argument("--seed", type=int, default=1234)
    samples.add_argument(
        "--overwrite", action="store_true", help="replace files in --out that differ from what the seed makes"
    )
    publish = commands.add_parser(
        "publish", help="stamp [tool.ftlib.publish] (repository, ref) into the notebooks' badges and setup cells"
    )
    publish.add_argument("--check", action="store_true", help="only list what disagrees; exit 1 if anything does")


def build_parser(train_flags: bool = True, description: str | None = None) -> argparse.ArgumentParser:
    """The ``python -m ftlib`` parser; ``args.command`` names the command.

    Args:
        train_flags: add the ``train`` command's hyperparameter flags (one per ``TrainConfig`` field);
            ``main`` leaves them out unless the command is ``train``, so other commands parse faster.
    """
    parser = argparse.ArgumentParser(prog="python -m ftlib", description=description)
    commands = parser.add_subparsers(dest="command", required=True)
    add_train(commands, train_flags)
    add_merge(commands)
    add_export(commands)
    add_small_commands(commands)
    add_scoring(commands, "evaluate", "score a run or base model on data with reference answers")
    add_scoring(commands, "generate", "write a run's or base model's answers")
    add_curriculum(commands)
    return parser
