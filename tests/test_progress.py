"""Bounded, visible cost: progress lines with an ETA when the output is a log, and training
step arithmetic that holds with several processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from distill.progress import LogProgress
from students.loop import optimizer_steps

ETA = re.compile(r"(\d[\d,]*)/(\d[\d,]*) \w+ \(\d+%\), \d+m\d\ds elapsed, ETA \d+m\d\ds")


def test_log_progress_eta_by_hand(monkeypatch, capsys):
    """Prevents a wrong ETA: 10 of 40 steps in 30 s leaves 30 steps at 3 s = 1m30s."""
    clock = iter([0.0, 0.0, 30.0, 30.0, 30.0, 30.0])
    monkeypatch.setattr("distill.progress.time.time", lambda: next(clock))
    monkeypatch.setenv("DISTILL_PROGRESS_SECONDS", "0")
    bar = LogProgress(40, "training", "steps")
    bar.update(10)
    line = capsys.readouterr().err.strip()
    assert line == "training: 10/40 steps (25%), 0m30s elapsed, ETA 1m30s"


@pytest.mark.parametrize(
    ("examples", "batch", "procs", "accum", "epochs", "cap", "expected"),
    [
        (100, 8, 1, 1, 1, None, 13),  # ceil(100 / 8)
        (100, 8, 2, 1, 3, None, 21),  # ceil(100 / 16) * 3
        (100, 8, 2, 2, 1, None, 4),  # ceil(100 / 32)
        (100, 8, 1, 1, 2, 5, 5),  # max_steps caps it
    ],
)
def test_optimizer_steps_by_hand(examples, batch, procs, accum, epochs, cap, expected):
    """Prevents a schedule sized in the wrong unit (per-process or micro-batch steps)."""
    assert optimizer_steps(examples, batch, procs, accum, epochs, cap) == expected


@pytest.mark.parametrize("processes", [1, 2, 4])
def test_learning_rate_reaches_its_end_at_the_last_step_with_n_processes(processes):
    """Prevents the reported multi-process bug: accelerate's prepared scheduler steps
    ``num_processes`` times per optimizer step, so a schedule sized in optimizer steps reached
    lr 0 after 1/N of training. Sized as train-student sizes it, the learning rate must be
    above 0 before the last optimizer step and exactly 0 after it."""
    from transformers import get_linear_schedule_with_warmup

    total, warmup = 20, 0.1
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, int(warmup * total) * processes, total * processes)
    seen = []
    for _ in range(total):
        opt.step()
        for _ in range(processes):  # what accelerate's AcceleratedScheduler.step does
            sched.step()
        seen.append(sched.get_last_lr()[0])
    assert all(lr > 0 for lr in seen[:-1])
    assert seen[-1] == 0.0
    assert max(seen) == pytest.approx(1.0)


@pytest.fixture
def mined(bm25_train_candidates):
    return bm25_train_candidates


def _logged(argv, tmp_path) -> str:
    """Run the CLI with stderr sent to a file (not a terminal), as under nohup or in CI."""
    log = tmp_path / "stage.log"
    with open(log, "w") as fh:
        done = subprocess.run(
            [sys.executable, "-m", "distill.cli", *map(str, argv)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "DISTILL_PROGRESS_SECONDS": "0"},
            timeout=600,
        )
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    return text


def test_label_and_student_logs_show_progress_with_eta(scifact_slice, mined, tiny_models, tmp_path):
    """Prevents tens of silent minutes under nohup: a log shows each stage's plan and
    progress lines with an ETA, and no carriage-return bar."""
    labels = tmp_path / "labels"
    text = _logged(
        ["label", scifact_slice, "--candidates", mined, "--teacher", tiny_models["bert-cross"],
         "--output", labels, "--shard-size", "100", "--allow-worse"],
        tmp_path,
    )  # fmt: skip
    assert "plan: " in text and "labelling (stops at 12 min): " in text and ETA.search(text), text[
        -2000:
    ]
    assert "\r" not in text
    text = _logged(
        ["train-student", scifact_slice, "--labels", labels, "--model", tiny_models["bert-bi"],
         "--output", tmp_path / "student", "--negatives", "2", "--false-negative-margin", "0",
         "--max-doc-length", "48", "--batch-size", "4"],
        tmp_path,
    )  # fmt: skip
    lines = [m for m in ETA.finditer(text) if "training student" in text[: m.end()]]
    assert "plan: " in text and lines, text[-2000:]
    last = lines[-1]
    assert last.group(1) == last.group(2)  # the last line is at the last step


def test_teach_log_shows_plan_and_progress(scifact_slice, tiny_models, tmp_path):
    """Prevents `teach` printing nothing between its start and its end in a log, a plan
    without a time estimate, and a log flooded with the Trainer's dicts and loading bars."""
    text = _logged(
        ["teach", scifact_slice, "--model", tiny_models["bert-cross"], "--output",
         tmp_path / "t", "--max-steps", "6", "--eval-steps", "3", "--max-length", "64",
         "--batch-size", "8", "--negatives", "3", "--val-candidates", "10",
         "--negatives-from", "bm25", "--allow-worse"],
        tmp_path,
    )  # fmt: skip
    plan = re.search(
        r"plan for teacher: .* (\d[\d,]*) steps .* about \d+ min on this machine", text
    )
    assert plan and plan.group(1) == "6", text[-3000:]
    assert re.search(r"teaching teacher: 6/6 steps \(100%\)", text), text[-3000:]
    # the loss and validation NDCG ride on the progress lines; the Trainer's dicts and the
    # libraries' loading bars do not reach the log (distill.console)
    assert re.search(r"teaching teacher: .*loss \d\.\d{4}, val NDCG@10 \d\.\d{4}", text), text
    assert "{'loss'" not in text and "Loading weights" not in text, text[-3000:]


def test_log_progress_writes_about_five_lines(monkeypatch, capsys):
    """Prevents a log flooded by progress lines (a line every 30 s of a long stage): with a
    line due every second, 100 steps of 0.25 s each give a line per fifth of the work, 5, plus
    none at close (the last step was printed); a stalled stage still prints every 10 s."""
    now = [0.0]
    monkeypatch.setattr("distill.progress.time.time", lambda: now[0])
    monkeypatch.setenv("DISTILL_PROGRESS_SECONDS", "1")
    bar = LogProgress(100, "labelling", "pairs")
    for _ in range(100):
        now[0] += 0.25
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert [int(re.match(r"labelling: (\d+)/", x).group(1)) for x in lines] == list(
        range(20, 101, 20)
    )
    bar = LogProgress(100, "slow", "pairs")  # 1 pair every 4 s: under a fifth for 80 s
    for _ in range(10):
        now[0] += 4.0
        bar.update(1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [int(re.match(r"slow: (\d+)/", x).group(1)) for x in lines] == [3, 6, 9]
