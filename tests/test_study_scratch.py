"""rho.study.scratch: a fresh git copy of the study at another profile, without data or other results."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rho.study.scratch import scratch_copy


def _repo(root: Path, params: str) -> Path:
    (root / "rho").mkdir(parents=True)
    (root / "rho" / "x.py").write_text("x = 1\n")
    (root / "params.yaml").write_text(params)
    for sub in ("results/mini", "results/paper"):
        (root / sub).mkdir(parents=True)
        (root / sub / "t.csv").write_text("a\n1\n")
    (root / ".gitignore").write_text("/data\n")
    (root / "data").mkdir()
    (root / "data" / "big.bin").write_bytes(b"0" * 10)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    return root


def test_copy_switches_profile_and_leaves_data_and_results_behind(tmp_path):
    src = _repo(tmp_path / "src", "# study\nprofile: mini   # comment\nseed: 0\n")
    dest = scratch_copy(src, tmp_path / "copy", "smoke")
    assert (dest / "params.yaml").read_text() == "# study\nprofile: smoke   # comment\nseed: 0\n"
    assert (dest / "rho" / "x.py").is_file() and (dest / "results" / "paper" / "t.csv").is_file()
    assert not (dest / "results" / "mini").exists() and not (dest / "data").exists()
    log = subprocess.run(["git", "log", "--oneline"], cwd=dest, capture_output=True, text=True, check=True)
    assert len(log.stdout.splitlines()) == 1
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=dest, capture_output=True, text=True, check=True
    )
    assert status.stdout == ""


def test_refuses_an_existing_destination_and_params_without_profile(tmp_path):
    src = _repo(tmp_path / "src", "seed: 0\n")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="choose a new folder"):
        scratch_copy(src, tmp_path / "taken", "smoke")
    with pytest.raises(ValueError, match="no top-level `profile:`"):
        scratch_copy(src, tmp_path / "copy", "smoke")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "taken"]  # nothing half-made
