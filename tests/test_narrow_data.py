"""The reference run's narrow data (benchmarks/quality_bar.py --data narrow): curated tickets from the narrow banks."""

from pathlib import Path

import pytest
from conftest import load_script

pytestmark = pytest.mark.integration  # the embedded model's tokenizer: curation drops tickets over max_length

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "quality_bar.py"


@pytest.fixture(scope="module")
def quality_bar():
    return load_script(SCRIPT, "quality_bar")


def test_narrow_train_is_curated_distinct_and_apart_from_the_held_out_tickets(quality_bar):
    from ftlib.core.tasks import SUPPORT_TICKETS
    from ftlib.data.dedup import dedup_key
    from ftlib.data.samples import generate_support_tickets
    from ftlib.engine.profiles import resolve_profile

    profile = resolve_profile("cpu")
    # a held-out set that shares tickets with the narrow draws: they must not reach the training set
    held_out = generate_support_tickets(60, seed=quality_bar.NARROW_SEED, period="narrow")[:5]
    train = quality_bar.narrow_train(40, SUPPORT_TICKETS, held_out, profile)
    assert len(train) == 40 and all(r["id"].startswith("narrow-") for r in train)
    texts = {dedup_key(r["ticket"]) for r in held_out}
    assert not texts & {dedup_key(r["ticket"]) for r in train}
    assert {r["category"] for r in train} <= set(SUPPORT_TICKETS.label_values["category"])
