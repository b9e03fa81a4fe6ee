import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("FTLIB_NUM_THREADS", "1")  # tiny models: one thread is fastest and deterministic

import pytest  # noqa: E402

from ftlib.models import load_model  # noqa: E402
from ftlib.runtime import pick_device  # noqa: E402
from ftlib.tasks import SUPPORT_TICKETS  # noqa: E402

TICKETS = [
    {"id": "a", "ticket": "My internet is down since 6am!", "category": "outage", "urgency": "high",
     "reply": "Sorry, a technician is on the way."},
    {"id": "b", "ticket": "how do I change my email?", "category": "account", "urgency": "low",
     "reply": "Go to Settings > Profile."},
    {"id": "c", "ticket": "charged twice for May", "category": "billing", "urgency": "medium",
     "reply": "I've opened a billing review."},
    {"id": "d", "ticket": "router smoking!!", "category": "hardware", "urgency": "high",
     "reply": "Unplug it now, a replacement is coming."},
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
