"""What produced a result: the locked environment, the versions that matter and the device.

Every run directory (``environment.json``, written by :func:`rho.train.train`) and every
``results/<profile>/metrics.json`` record :func:`environment`.  The record holds only what is the
same on every machine that installs the same lock (no host name, CPU model or time), so that a
re-run on another machine of the same kind writes the same bytes.
"""

from __future__ import annotations

import functools
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from rho.io import sha256_file

#: The repository's lock files (absent when rho is installed from a wheel).
LOCK_DIR = Path(__file__).resolve().parents[1] / "requirements"
LOCKS = ("cpu.lock", "gpu.lock")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def lock_pins(path: str | Path) -> dict[str, str]:
    """``{canonical name: version}`` of a ``name==version`` lock file."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        m = _PIN.match(line)
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def active_lock() -> dict[str, Any]:
    """The lock file whose every pin is installed here: ``{"lock", "lock_sha256", "locked"}``.

    ``locked`` is False (and ``lock`` names the closest lock, or None) when the running
    environment differs from every lock, e.g. a library install from ``pyproject.toml``'s ranges;
    ``mismatches`` then lists up to ten ``name: installed != pinned`` differences.
    """
    best: dict[str, Any] = {"lock": None, "lock_sha256": None, "locked": False, "mismatches": []}
    fewest = None
    for name in LOCKS:
        path = LOCK_DIR / name
        if not path.is_file():
            continue
        bad = [
            f"{pkg}: {_installed(pkg)} != {ver}"
            for pkg, ver in sorted(lock_pins(path).items())
            if _installed(pkg) != ver
        ]
        if fewest is None or len(bad) < fewest:
            fewest = len(bad)
            best = {
                "lock": f"requirements/{name}",
                "lock_sha256": sha256_file(path),
                "locked": not bad,
                "mismatches": bad[:10],
            }
    return best


def device_name(device: Any = None) -> str:
    """``"cpu"`` or ``"cuda:<GPU name>"`` (the kind of device, not the host)."""
    import torch

    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(dev)}"
    return dev.type if dev is not None else "cpu"


def environment(device: Any = None) -> dict[str, Any]:
    """The record stored beside results: lock file and hash, key versions, device."""
    import torch
    import transformers

    return {
        **active_lock(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device_name(device),
    }
