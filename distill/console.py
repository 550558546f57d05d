"""What the console shows: each stage's own lines, not the libraries' chatter.

By default (:func:`quiet_libraries`), output a user cannot act on is silenced where it arises:

* transformers' and huggingface_hub's progress bars ("Loading weights ...") and their info
  and load reports (missing or unexpected weights are expected when a bi-encoder becomes a
  cross-encoder; :mod:`distill.models` says so in one line of its own);
* torch's ``TracerWarning`` lines while a teacher is exported to ONNX (silenced in
  :mod:`teachers.onnx`: the export is checked against torch on real pairs before it is used);
* the ``{'loss': ...}`` dictionaries the Trainer prints when it draws no bar (the stages print
  progress lines with an ETA instead, see :mod:`distill.progress`).

Warnings of our own, and library errors, stay visible. ``distill --verbose COMMAND`` (or
``DISTILL_VERBOSE=1``) leaves everything as the libraries print it.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

VERBOSE_ENV = "DISTILL_VERBOSE"


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def detail(echo, message: str) -> None:
    """A line only ``--verbose`` shows: what a stage is doing or chose, when the user cannot
    act on it and its figures are in the stage's manifest (the demo's console stays short)."""
    if verbose():
        echo(message, err=True)


def quiet_libraries() -> None:
    """Silence the libraries' chatter unless ``--verbose``; safe to call more than once.
    Cheap: before transformers is imported it only sets the environment it reads."""
    if verbose():
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (tests, notebooks): tell it directly
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    for name in ("sentence_transformers", "accelerate", "torch.onnx", "onnxruntime"):
        logging.getLogger(name).setLevel(logging.ERROR)


def trainer_printer_off(trainer) -> None:
    """Drop the Trainer's ``{'loss': ...}`` printer (on when it draws no bar), unless verbose:
    the stages' own progress lines carry the step, loss and ETA."""
    if verbose():
        return
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


@contextmanager
def quiet_root_logger():
    """onnxruntime's quantizer logs a pre-processing hint on the root logger at WARNING (the
    user cannot act on it: the export is compared with torch in the serving table)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
