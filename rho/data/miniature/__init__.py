"""The miniature world: an offline stand-in for the paper's corpora and benchmarks.

``build_world(out_dir, profile="mini", seed=0, **overrides)`` (in :mod:`.world`) writes it all;
the other modules are its parts (problems, noise, pages, offline general text, suites).
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "build_world":
        from rho.data.miniature.world import build_world

        return build_world
    raise AttributeError(f"module 'rho.data.miniature' has no attribute {name!r}")
