"""A stand-in stage entry point for the fork-server tests (no torch)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

#: A client process: runs its argv through the stage server named by RHO_STUDY_SERVER (exit 99: no
#: server took the stage).
CLIENT = (
    "import sys; from rho.study.server import run_via_server; "
    "r = run_via_server(sys.argv[1:]); sys.exit(99 if r is None else r)"
)


def client_cmd(*argv: str) -> list[str]:
    """The command line of a client process asking for stage ``argv``."""
    return [sys.executable, "-c", CLIENT, *argv]


def run_client(
    env: dict[str, str], *argv: str, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run a client process to its end and return its exit status and output."""
    return subprocess.run(
        client_cmd(*argv), cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout
    )


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
