"""The reference run: lesson 06's experiments at the cpu profile's full training budget, each with two seeds.

    .venv/bin/python benchmarks/reference_run.py [--seeds 0 1] [--only NAME ...] [--list]

Lesson 06 runs its experiments live at a few steps, too few to decide anything; this runs them as the course trains
for real: the `cpu` profile's steps and batch (lesson 03's run), on 2 cores, each variant changing one thing from
the defaults. Each (experiment, seed) is one ``benchmarks/quality_bar.py`` run in its own process, scored on the
generated test split and on both halves of the field test, with intervals, and added to
``benchmarks/results/reference_runs.json`` under ``"<experiment> / seed <s>"`` as soon as it ends.

Resumable: an entry already in the file is skipped, so a stopped sitting goes on where it stopped (a run cut off
mid-way is trained again from its start). One run takes about 30-35 minutes on a 2-core machine (the 3-epoch and
full fine-tuning runs longer): the whole set is a job for several sittings on an idle machine. Never run it beside
another timed job. ``--list`` prints what is done and what is left, with nothing trained.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "reference_runs.json"

# name -> the quality_bar.py arguments that make the variant (each against the defaults: LoRA, curated data, the
# profile's steps, learning rate and label-token weight). Comments say which claim of the ledger each one tests.
EXPERIMENTS: dict[str, list[str]] = {
    "defaults": [],
    "raw data": ["--data", "raw"],  # curated vs raw: the flawed sample with its injected flaws
    "128 examples": ["--n-train", "128"],  # training-set size at equal steps
    "512 examples": ["--n-train", "512"],  # also the small curated set against the raw one at equal compute
    "narrow data": ["--data", "narrow"],  # narrow against varied: as many tickets, fewer phrasings of each problem
    "label weight 1": ["--label-token-weight", "1"],  # the label-token weight: 1 against the default 10
    "lr 1e-4": ["--learning-rate", "1e-4"],  # the articles' PEFT learning rate against the course's 1e-3
    "1 epoch": ["--epochs", "1"],  # 1 epoch against 3 (the defaults' 290 steps are 1.1 epochs)
    "3 epochs": ["--epochs", "3"],
    "full fine-tune": ["--methods", "full", "--learning-rate", "5e-5"],  # LoRA against full fine-tuning
}
METHODS = ["--methods", "lora"]  # QLoRA against LoRA is lesson 04's pair, measured there


def entry_name(experiment: str, seed: int) -> str:
    return f"{experiment} / seed {seed}"


def done(path: Path = RESULTS) -> set[str]:
    """The names of the runs the results file already holds."""
    return set(json.loads(path.read_text())) if path.exists() else set()


def command(experiment: str, seed: int, output: Path = RESULTS) -> list[str]:
    """The quality_bar.py command line of one run."""
    arguments = EXPERIMENTS[experiment]
    methods = [] if "--methods" in arguments else METHODS
    return [
        sys.executable,
        str(HERE / "quality_bar.py"),
        *methods,
        *arguments,
        "--seed",
        str(seed),
        "--name",
        entry_name(experiment, seed),
        "--output",
        str(output),
    ]


def plan(experiments: list[str], seeds: list[int], output: Path = RESULTS) -> list[tuple[str, int]]:
    """The runs still to do, in order: every experiment's first seed before any second seed, so that a partial
    reference run covers every experiment once before it repeats any."""
    finished = done(output)
    return [(e, s) for s in seeds for e in experiments if entry_name(e, s) not in finished]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--only", nargs="+", choices=list(EXPERIMENTS), help="these experiments (default: all)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--list", action="store_true", help="print what is done and what is left; train nothing")
    args = parser.parse_args(argv)
    experiments = args.only or list(EXPERIMENTS)
    todo = plan(experiments, args.seeds, args.output)
    total = len(experiments) * len(args.seeds)
    print(f"{total - len(todo)} of {total} runs done in {args.output}; {len(todo)} to go")
    if args.list:
        for experiment, seed in todo:
            print(f"  to do: {entry_name(experiment, seed)}: {' '.join(command(experiment, seed, args.output)[2:])}")
        return 0
    for number, (experiment, seed) in enumerate(todo, start=1):
        print(f"== [{number}/{len(todo)}] {entry_name(experiment, seed)}", flush=True)
        started = time.perf_counter()
        subprocess.run(command(experiment, seed, args.output), check=True)
        print(f"   done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
