"""Device, dtype and CPU-thread choices, made deliberately rather than by default."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    import torch

_THREADS_CHOSEN: int | None = None


@dataclass(frozen=True)
class DeviceChoice:
    """Where to run and in which precision."""

    device: str
    dtype: torch.dtype
    name: str

    def describe(self) -> str:
        return f"{self.name} ({self.device}, {str(self.dtype).removeprefix('torch.')})"


def pick_device(prefer: str | None = None) -> DeviceChoice:
    """Choose the device and compute dtype.

    CUDA with bf16 where the GPU supports it, fp16 on older GPUs such as the T4 (which has
    no bf16), and fp32 on CPU: CPUs without native bf16 run bf16 matmuls ~50x slower.

    Under a distributed launcher (``torchrun``, ``accelerate launch``) each process gets its own GPU,
    ``cuda:LOCAL_RANK``: a 4-bit model cannot be moved after loading, so it must load there.

    Args:
        prefer: "cpu" or "cuda" to force one; None picks CUDA when available.
    """
    import torch  # here, not at the top: reading data and checking inputs must not wait for torch (1 s)

    use_cuda = torch.cuda.is_available() if prefer is None else prefer == "cuda"
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA GPU")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        rank = local_rank()
        if rank is None:
            return DeviceChoice("cuda", dtype, torch.cuda.get_device_name(0))
        index = rank % torch.cuda.device_count()
        return DeviceChoice(f"cuda:{index}", dtype, torch.cuda.get_device_name(index))
    return DeviceChoice("cpu", torch.float32, f"CPU x{available_cores()}")


def release_memory() -> None:
    """Return freed model memory before the next model loads: collect garbage, then empty CUDA's cache.

    Drop your own references first (``del model``); Python frees a model only when nothing refers to it, and
    PyTorch's caching allocator keeps the freed GPU blocks for itself until ``empty_cache``.
    """
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def local_rank() -> int | None:
    """This process's rank on its machine under ``torchrun``/``accelerate launch``; None without a launcher."""
    value = int(os.environ.get("LOCAL_RANK", "-1") or -1)
    return value if value >= 0 else None


def local_world_size() -> int:
    """How many processes a distributed launcher started on this machine (1 without one)."""
    return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))


def available_cores() -> int:
    """Cores this process may run on (respects affinity masks and containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def matmul_gflops(threads: int, size: int = 512, seconds: float = 0.25) -> float:
    """Measure fp32 matmul throughput with a given number of intra-op threads."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        a @ b  # warm-up: thread pool start and caches
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            runs += 1
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    return 2 * size**3 * runs / elapsed / 1e9


def configure_cpu_threads(threads: int | None = None, verbose: bool = False) -> int:
    """Set torch's CPU threads from a measurement, once per process.

    On small machines the default (all cores) can be many times slower than one thread
    when another process keeps a core busy (OpenMP threads spin and wait on each other).
    So each candidate count is timed on an fp32 matmul, and the fastest one wins unless
    it beats one thread by less than 20%, the margin below which contention is not worth
    risking. Under a distributed launcher each process measures its share of the cores.
    ``FTLIB_NUM_THREADS`` or ``threads`` override the measurement.

    Returns:
        The number of threads now in use.
    """
    import torch

    global _THREADS_CHOSEN
    requested = threads or int(os.environ.get("FTLIB_NUM_THREADS", "0") or 0)
    if requested:
        _THREADS_CHOSEN = requested
    elif _THREADS_CHOSEN is None:
        cores = max(1, available_cores() // local_world_size())  # processes on this machine share its cores
        candidates = sorted({1, cores} | ({cores // 2} if cores >= 8 else set()))
        # Best of three interleaved rounds: one short timing can catch a neighbour's burst and pick wrong.
        speeds = {n: 0.0 for n in candidates}
        for _ in range(3):
            for n in candidates:
                speeds[n] = max(speeds[n], matmul_gflops(n, size=768, seconds=0.2))
        best = max(speeds, key=speeds.get)
        _THREADS_CHOSEN = best if speeds[best] > 1.2 * speeds[1] else 1
        if verbose:
            shown = ", ".join(f"{n} thread(s): {g:.0f} GFLOP/s" for n, g in speeds.items())
            print(f"CPU matmul {shown} -> using {_THREADS_CHOSEN}")
    torch.set_num_threads(_THREADS_CHOSEN)
    return _THREADS_CHOSEN


def machine() -> dict:
    """What a result was measured on: CPU model, cores this process may use, RAM and the date (results quote it)."""
    cpu = platform.processor() or platform.machine()
    memory_gib = None
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        memory_gib = round(pages / 2**30, 1)
    except (OSError, StopIteration, ValueError):  # not Linux: the platform's own name
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": memory_gib,
        "date": datetime.date.today().isoformat(),
    }


def cache_dir() -> Path:
    """Where ftlib keeps converted models and the ``datasets`` cache: ``$FTLIB_CACHE_DIR`` or ``~/.cache/ftlib``."""
    return Path(os.environ.get("FTLIB_CACHE_DIR", Path.home() / ".cache" / "ftlib"))


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_reachable(timeout: float = 2.0) -> bool:
    """True unless offline mode is set (``OFFLINE_VARIABLES``) or huggingface.co cannot be reached quickly."""
    if any(os.environ.get(name, "0") not in ("0", "", "false", "False") for name in OFFLINE_VARIABLES):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# Ctrl-C on the command line ------------------------------------------------------------------------------------

_interrupted = False


def _on_sigint(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


@contextlib.contextmanager
def catch_interrupts() -> Iterator[None]:
    """While inside, Ctrl-C raises KeyboardInterrupt as Python's default handler does, and is also remembered, so
    that a library that swallows the exception (a broad ``except BaseException`` while it starts up) cannot keep a
    run going: ``interrupt_requested`` tells the training loop to stop at its next step. On leaving, the earlier
    handler is back and nothing is remembered, so a command called in-process (a test, a notebook) leaves no trace.
    Used by the command line only. Off the main thread, where Python lets no one set a signal handler, it does
    nothing."""
    import signal
    import threading

    global _interrupted
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _interrupted = False
    previous = signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _interrupted = False


def interrupt_requested() -> bool:
    """Whether Ctrl-C was pressed inside ``catch_interrupts`` (always False outside it)."""
    return _interrupted
