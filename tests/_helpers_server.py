"""A stand-in stage entry point for the fork-server tests (no torch)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    """``echo TEXT CODE`` | ``where`` | ``fail`` | ``sleep PIDFILE``."""
    cmd = argv[0]
    if cmd == "echo":
        print(argv[1])
        print("to stderr", file=sys.stderr)
        return int(argv[2])
    if cmd == "where":
        print(os.getcwd(), os.environ.get("RHO_TEST_VALUE"), os.environ.get("RHO_STUDY_SERVER"))
        return 0
    if cmd == "fail":
        raise ValueError("the stage broke")
    if cmd == "sleep":
        Path(argv[1]).write_text(str(os.getpid()))
        time.sleep(60)
        return 0
    raise SystemExit(f"unknown command {cmd}")
