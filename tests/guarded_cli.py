"""``python -m ftlib`` with a guard on the model loaders, for the bad-input table (tests/test_bad_input.py).

Run as ``python tests/guarded_cli.py <command> <flags>``: the real command line, except that loading model weights
(``ftlib.engine.models.load_model``, or any ``PreTrainedModel.from_pretrained``) prints ``MODEL LOADED`` and exits
99. The loaders are replaced as their modules are first imported, so every later ``from ... import load_model``
binds the guard, and a command that refuses before importing them pays nothing for it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import runpy
import sys

GUARD_EXIT = 99


def refuse(*args, **kwargs):
    print("MODEL LOADED: the command reached a model loader before refusing", file=sys.stderr, flush=True)
    os._exit(GUARD_EXIT)  # noqa: SLF001 (no cleanup may run: nothing after a load counts)


def guard_ftlib(module) -> None:
    module.load_model = refuse


def guard_transformers(module) -> None:
    module.PreTrainedModel.from_pretrained = classmethod(refuse)


PATCHES = {"ftlib.engine.models": guard_ftlib, "transformers.modeling_utils": guard_transformers}


class Guard(importlib.abc.MetaPathFinder):
    """Finds the guarded modules as usual, then patches each right after it runs."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


if __name__ == "__main__":
    sys.meta_path.insert(0, Guard())
    sys.argv = ["python -m ftlib", *sys.argv[1:]]
    runpy.run_module("ftlib", run_name="__main__", alter_sys=True)
