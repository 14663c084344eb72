"""Data layer: corpora, tokenization and memory-mapped token shards.

``rho.data.build_world`` (the miniature world) is imported lazily so that reading shards does not
load the corpus generators.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "build_world":
        from rho.data.miniature.world import build_world

        return build_world
    raise AttributeError(f"module 'rho.data' has no attribute {name!r}")
