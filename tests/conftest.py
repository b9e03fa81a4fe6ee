import hashlib
import os
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("FTLIB_NUM_THREADS", "1")  # tiny models: one thread is fastest and deterministic
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers (-n 2): one core each, no spinning threads
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from ftlib.core.runtime import pick_device  # noqa: E402
from ftlib.core.tasks import SUPPORT_TICKETS  # noqa: E402
from ftlib.course.curriculum import NOTEBOOKS  # noqa: E402
from ftlib.engine import adapters  # noqa: E402
from ftlib.engine.models import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_PATHS = [ROOT / "notebooks" / f"{name}.ipynb" for name in NOTEBOOKS]

TICKETS = [
    {
        "id": "a",
        "ticket": "My internet is down since 6am!",
        "category": "outage",
        "urgency": "high",
        "reply": "Sorry, a technician is on the way.",
    },
    {
        "id": "b",
        "ticket": "how do I change my email?",
        "category": "account",
        "urgency": "low",
        "reply": "Go to Settings > Profile.",
    },
    {
        "id": "c",
        "ticket": "charged twice for May",
        "category": "billing",
        "urgency": "medium",
        "reply": "I've opened a billing review.",
    },
    {
        "id": "d",
        "ticket": "router smoking!!",
        "category": "hardware",
        "urgency": "high",
        "reply": "Unplug it now, a replacement is coming.",
    },
]


@pytest.fixture
def tickets():
    return [dict(t) for t in TICKETS]


@pytest.fixture
def task():
    return SUPPORT_TICKETS


@pytest.fixture(scope="session")
def cpu():
    return pick_device("cpu")


@pytest.fixture
def tiny(cpu):
    """A fresh tiny random Llama (seeded) and its byte-level ChatML tokenizer."""
    return load_model("tiny-random-llama", device=cpu)


TIERS = ("unit", "integration")
# `make test` runs two xdist workers; each group below runs whole on one worker, in collection order. nbval's
# notebooks write the run the next one reads; the smoke run (`smoke_run`) is one session fixture that
# test_notebooks.py and test_exercises.py share; every other file is its own group, so a module-scoped fixture
# runs once. The longest groups come first, so the two longest start at once (figures in docs/tests.md).
SHARED_GROUPS = {"tests/test_notebooks.py": "smoke_run", "tests/test_exercises.py": "smoke_run"}
FIRST_GROUPS = (
    "notebooks",
    "smoke_run",
    "tests/test_colab.py",
    "tests/test_chat_spec.py",
    "tests/test_browser.py",
)


def test_group(nodeid: str) -> str:
    """The group a test runs in under xdist, from its id (the scheduler sees ids, not items)."""
    path = nodeid.split("::")[0]
    return "notebooks" if path.startswith("notebooks/") else SHARED_GROUPS.get(path, path)


def pytest_xdist_make_scheduler(config, log):
    """xdist's scope scheduling, with the scopes of ``test_group``."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return test_group(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Every test under tests/ carries exactly one tier, so ``-m unit`` and ``-m integration`` split the suite.

    Runs before ``-m`` deselects anything, so a test that is unmarked or marked both fails every run, not only
    the run that would have missed it. The longest groups of ``test_group`` come first (stable: the order within
    a group stays).
    """
    here = Path(__file__).resolve().parent
    wrong = [
        f"{item.nodeid}: {sorted(tiers) or 'no tier'}"
        for item in items
        if here in Path(item.path).resolve().parents
        and len(tiers := {mark.name for mark in item.iter_markers() if mark.name in TIERS}) != 1
    ]
    if wrong:
        raise pytest.UsageError(
            "each test needs exactly one of the markers unit or integration:\n  " + "\n  ".join(wrong)
        )
    rank = {name: index for index, name in enumerate(FIRST_GROUPS)}
    items.sort(key=lambda item: rank.get(test_group(item.nodeid), len(rank)))


def tiny_train_args(data, val, output, **flags) -> list[str]:
    """``python -m ftlib train`` arguments for the tiny random model on the CPU without warm-up.

    ``flags`` add or override options by field name: ``max_steps=6`` becomes ``--max-steps 6``.
    """
    options = {"base_model": "tiny-random-llama", "device": "cpu", "warmup_steps": 0} | flags
    arguments = ["train", "--data", str(data), "--val", str(val), "--output", str(output)]
    for name, value in options.items():
        arguments += [f"--{name.replace('_', '-')}", str(value)]
    return arguments


def with_active_lora(model, config):
    """``model`` with LoRA adapters whose B matrices are random (seeded), so the adapters change the output.

    Freshly attached adapters start as an exact no-op (B = 0); loss and gradient tests need them to do something.
    """
    import torch

    model = adapters.attach_lora(model, config)
    torch.manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.1)
    return model


def load_script(path: Path, name: str):
    """A benchmark or tool script as a module named ``name``, registered in ``sys.modules`` while it runs (dataclasses
    look their module up while the class is built)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_curriculum(run_dir: Path, dataset: str, paths: list[Path] = NOTEBOOK_PATHS) -> dict[str, Exception | None]:
    """The notebooks, in order, in one run folder, as papermill jobs in the smoke profile: each one's error."""
    import papermill

    outcomes = {}
    for path in paths:
        try:
            papermill.execute_notebook(
                str(path),
                str(run_dir / path.name),
                cwd=str(path.parent),
                parameters={"profile": "smoke", "run_dir": str(run_dir), "dataset": dataset},
                kernel_name="python3",
                progress_bar=False,
            )
            outcomes[path.stem] = None
        except Exception as error:  # reported by the notebook's own test
            outcomes[path.stem] = error
    return outcomes


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """The curriculum on the second dataset (listings): switching the whole curriculum to it takes one parameter.

    nbval runs the same notebooks on the default dataset (support tickets). Session-wide: the notebook tests
    (tests/test_notebooks.py) check this run, and the exercises' solutions (tests/test_exercises.py) read it.
    """
    samples = sorted((ROOT / "data" / "samples").glob("*"))
    before = {p.name: sha256(p) for p in samples}
    run_dir = tmp_path_factory.mktemp("smoke")
    outcomes = run_curriculum(run_dir, "listings")
    after = {p.name: sha256(p) for p in samples}
    return run_dir, outcomes, before == after
