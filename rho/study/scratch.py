"""A scratch copy of the study (git + DVC) at another profile: for tests, benchmarks and trials.

``scratch_copy(root, dest, "smoke")`` copies the files git tracks or would track (not the ignored
data, runs and caches, nor other profiles' results), switches ``params.yaml`` to the profile and
makes the copy its own git repository, so that ``dvc repro`` there starts from nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from rho.io import atomic_dir


def scratch_copy(root: str | os.PathLike, dest: str | os.PathLike, profile: str) -> Path:
    """Copy the study at ``root`` to ``dest`` (which must not exist) with ``profile: <profile>``."""
    root, dest = Path(root), Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; scratch_copy writes a fresh copy, choose a new folder")
    text, n = re.subn(
        r"(?m)^profile: *\S+", f"profile: {profile}", (root / "params.yaml").read_text(), count=1
    )
    if n != 1:
        raise ValueError(f"{root / 'params.yaml'} has no top-level `profile:` line to switch")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    with atomic_dir(dest) as tmp:  # a failure leaves no half-made copy
        for name in listed:
            src = root / name
            keep = not name.startswith("results/") or name.startswith("results/paper/")
            if src.is_file() and keep:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, tmp / name)
        (tmp / "params.yaml").write_text(text)
        for cmd in (
            ["git", "init", "-q"],
            ["git", "add", "-A"],
            ["git", "-c", "user.email=rho@localhost", "-c", "user.name=rho", "commit", "-qm", "scratch"],
        ):
            subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
    return dest
