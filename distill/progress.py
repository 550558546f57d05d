"""Progress a person can follow: bars on a terminal, timed lines with an ETA in a log.

Under ``nohup``, in CI or with output sent to a file, a tqdm bar either prints nothing or
floods the file with carriage returns. :func:`progress` returns a tqdm bar when stderr is a
terminal and a :class:`LogProgress` otherwise, which prints a line once ``every`` seconds
(``DISTILL_PROGRESS_SECONDS``, 30 by default) have passed and a fifth of the work is done since
the last line, at least every ``10 x every`` seconds, and one at the end (so a short stage
writes about five lines, and a long one still shows it is alive)::

    labelling: 1,200/5,000 pairs (24%), 2m10s elapsed, ETA 6m52s
"""

from __future__ import annotations

import os
import sys
import time


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def interval() -> float:
    """Seconds between two progress lines in a log."""
    try:
        return max(0.0, float(os.environ.get("DISTILL_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


class LogProgress:
    """The part of tqdm's interface the stages use, written as timed lines to stderr."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.n = self.start_n = initial
        self.started = self.last = time.time()
        self.every = interval()
        self.postfix = ""
        self.printed = -1  # the count of the last line printed

    def eta(self) -> float | None:
        done = self.n - self.start_n
        if done <= 0:
            return None
        return (time.time() - self.started) / done * (self.total - self.n)

    def line(self) -> str:
        share = f" ({self.n / self.total:.0%})" if self.total else ""
        eta = self.eta()
        return (
            f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}{share}, "
            f"{_clock(time.time() - self.started)} elapsed"
            + ("" if eta is None else f", ETA {_clock(eta)}")
            + (f", {self.postfix}" if self.postfix else "")
        )

    def update(self, n: int = 1) -> None:
        self.n += n
        waited = time.time() - self.last
        advanced = self.n - max(self.printed, self.start_n) >= self.total / 5
        if waited >= self.every and (advanced or waited >= 10 * self.every):
            self.last = time.time()
            self.printed = self.n
            print(self.line(), file=sys.stderr, flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        if self.n > self.start_n and self.printed != self.n:
            print(self.line(), file=sys.stderr, flush=True)


def progress(total: int, desc: str, unit: str = "it", *, initial: int = 0, disable: bool = False):
    """A tqdm bar on a terminal, :class:`LogProgress` lines otherwise (or a silent bar)."""
    from tqdm.auto import tqdm

    if disable or sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=disable)
    return LogProgress(total, desc, unit, initial)


def expect_validation(callbacks, seconds: float) -> None:
    """Tell :func:`trainer_callbacks`' budget what a validation will cost before one has run
    (an estimate from the plan's probe), so the validation that follows a stop fits too."""
    for callback in callbacks:
        if hasattr(callback, "validation_seconds"):
            callback.validation_seconds = max(callback.validation_seconds, seconds)


def trainer_callbacks(desc: str, budget_seconds: float | None = None) -> list:
    """transformers ``TrainerCallback``s: :class:`LogProgress` lines per step when stderr is
    not a terminal (the Trainer's own bar is off then), a validation at the last step (when
    the run validates by steps), and a stop once ``budget_seconds`` of training have passed,
    less the last validation's time, or its estimate before one ran (the stop validates once
    more; the best checkpoint so far is still the one kept)."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar: LogProgress | None = None
        started = 0.0

        def __init__(self) -> None:
            self.shown: dict[str, str] = {}
            self.step_ended = 0.0
            self.validation_seconds = 0.0  # the last validation's, kept back from the budget

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.time()
            if not sys.stderr.isatty():
                self.bar = LogProgress(state.max_steps, desc, "steps", state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)
            validating = getattr(args.eval_strategy, "value", args.eval_strategy) == "steps"
            if validating and state.global_step >= state.max_steps:
                # the Trainer validates only every eval_steps: without this, the steps after
                # the last multiple were trained and then thrown away by load_best_model_at_end
                control.should_evaluate = control.should_save = True
            self.step_ended = time.time()
            # the validation that follows a stop must fit in the budget too
            spent = self.step_ended - self.started + self.validation_seconds
            if budget_seconds is not None and spent >= budget_seconds:
                print(
                    f"{desc}: time budget of {_clock(budget_seconds)} reached at step "
                    f"{state.global_step} of {state.max_steps}; stopping",
                    file=sys.stderr,
                    flush=True,
                )
                control.should_training_stop = True
                control.should_evaluate = control.should_save = True

        def on_evaluate(self, args, state, control, **kwargs):
            self.validation_seconds = time.time() - self.step_ended

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is None or not logs:
                return  # the Trainer's own printer is off (distill.console): loss and NDCG here
            for key, value in logs.items():
                if key == "loss" or key.endswith("ndcg@10"):
                    name = "loss" if key == "loss" else "val NDCG@10"
                    self.shown[name] = f"{float(value):.4f}"
            self.bar.set_postfix(**self.shown)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return [Progress()]
