"""The locked environments cover pyproject.toml: every dependency pinned (==, hashed, in range)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$")


def read_lock(path: Path) -> dict[str, tuple[Version, int]]:
    """``{name: (version, number of hashes)}`` of a ``uv pip compile --generate-hashes`` file."""
    pins: dict[str, tuple[Version, int]] = {}
    name = None
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m:
            name = canonicalize_name(m.group(1))
            assert name not in pins, f"{path.name}: {name} pinned twice"
            pins[name] = (Version(m.group(2)), 0)
        elif line.strip().startswith("--hash=sha256:") and name is not None:
            pins[name] = (pins[name][0], pins[name][1] + 1)
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{path.name}: unexpected line {line!r} (every entry must be name==version)")
    return pins


def requirements(extras: tuple[str, ...]) -> list[Requirement]:
    """The dependencies of rho with ``extras``, following rho's own ``rho[...]`` references."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    opt = project["optional-dependencies"]
    out, todo, seen = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, opt[extra]):
            if canonicalize_name(r.name) == "rho":
                todo += sorted(r.extras)
            else:
                out.append(r)
    return out


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("cpu.lock", ("study", "dev")), ("gpu.lock", ("study", "dev", "gpu"))],
)
def test_lock_pins_every_dependency_in_range_with_hashes(lock: str, extras: tuple[str, ...]) -> None:
    pins = read_lock(ROOT / "requirements" / lock)
    assert len(pins) > 50
    for req in requirements(extras):
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} does not pin {req.name} (pyproject.toml): run `make lock`"
        version, n_hashes = pins[name]
        assert req.specifier.contains(version, prereleases=True), f"{lock}: {name}=={version} not in {req}"
    unhashed = [n for n, (_, k) in pins.items() if k == 0]
    assert not unhashed, f"{lock}: entries without hashes: {unhashed}"


def test_cpu_lock_pins_the_cpu_build_of_torch() -> None:
    version, n_hashes = read_lock(ROOT / "requirements" / "cpu.lock")["torch"]
    assert version == Version("2.13.0+cpu") and n_hashes >= 1
    assert (ROOT / "requirements" / "torch-cpu.txt").read_text().split() == ["torch==2.13.0+cpu"]


def test_read_lock_refuses_unpinned_entries(tmp_path: Path) -> None:
    bad = tmp_path / "bad.lock"
    bad.write_text("numpy>=1.26 \\\n    --hash=sha256:00\n")
    with pytest.raises(AssertionError, match="unexpected line"):
        read_lock(bad)
