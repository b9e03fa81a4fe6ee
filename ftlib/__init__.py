"""ftlib: the library behind the fine-tuning curriculum."""

import logging

__version__ = "0.1.0"


def _drop_kernels_hub_message(record: logging.LogRecord) -> bool:
    """False for bitsandbytes' "Failed to load CPU gemm_4bit_forward from kernels-community" warning only."""
    return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward from kernels-community")


# bitsandbytes (imported by peft and transformers, never by ftlib itself, hence here: before any of them)
# warns at import on CPUs with AVX512-BF16 that it cannot fetch an optional kernel from the Hugging Face hub
# through the `kernels` package. It falls back to its own CPU kernel, that fused kernel is bf16-only while
# ftlib trains in fp32 on CPUs, and fetching it needs the hub: nothing a learner can or should act on.
# The filter drops that one message; every other bitsandbytes warning still shows.
logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_drop_kernels_hub_message)
