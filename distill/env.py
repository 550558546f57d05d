"""``distill env``: what is installed and where models come from (version mismatch and
environment drift are named failures; this is the first thing to paste into a bug report)."""

from __future__ import annotations

import platform
import sys

from distill.artifacts import library_versions


def report() -> str:
    import torch

    from distill.models import bundled_model_path

    lines = [
        f"python                 {platform.python_version()} ({sys.executable})",
        f"platform               {platform.platform()}",
    ]
    lines += [f"{name:<22} {version}" for name, version in library_versions().items()]
    if torch.cuda.is_available():
        device = f"cuda: {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
    lines.append(f"device                 {device}")
    lines.append(f"bundled model          {bundled_model_path()}")
    return "\n".join(lines)


def several_cpu_processes() -> bool:
    """True when this is one of several processes (torchrun, ``accelerate launch``) on a
    machine with no GPU. Accelerate must then be told ``cpu=True`` to join them (gloo):
    otherwise each process silently runs alone as process 0, and all of them write the same
    files."""
    import os

    import torch

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
