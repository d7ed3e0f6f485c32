"""Runs in every Ray worker the tests start (``worker_process_setup_hook``): counts face encodes.

Each call of :meth:`TinyFaceEncoder.encode` appends the worker's pid to the file named by
``$STORYREEL_TEST_ENCODES``, so a test can count encodes across processes. The encoder class is wrapped
when its module is first imported, so workers that never need it never import torch for it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys

ENCODES_ENV = "STORYREEL_TEST_ENCODES"
FACES_MODULE = "ingredients_model.faces"


def _wrap(encoder_class: type) -> None:
    original = encoder_class.encode

    def encode(self, *args, **kwargs):
        with open(os.environ[ENCODES_ENV], "a") as log:
            log.write(f"{os.getpid()}\n")
        return original(self, *args, **kwargs)

    encoder_class.encode = encode


class _WrapOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != FACES_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _wrap(module.TinyFaceEncoder)

        spec.loader.exec_module = exec_module
        return spec


def count_encodes() -> None:
    """The setup hook: wrap the tiny face encoder when it is imported (if ``$STORYREEL_TEST_ENCODES``)."""
    if os.environ.get(ENCODES_ENV) and FACES_MODULE not in sys.modules:
        sys.meta_path.insert(0, _WrapOnImport())


def encodes(path) -> int:
    """How many encodes were logged in ``path``."""
    try:
        return len(open(path).read().split())
    except FileNotFoundError:
        return 0
