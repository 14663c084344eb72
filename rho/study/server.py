"""A fork server for the study's stage commands: pay for importing torch/transformers once.

Every stage of ``dvc.yaml`` is a ``python -m rho.study ...`` process, and each spends ~3.5 s
importing torch and transformers before doing any work; on the ``smoke`` profile that is most of
the DAG's time.  ``python -m rho.study serve`` imports them once and waits on a Unix socket; with
``RHO_STUDY_SERVER=<socket>`` in the environment, ``python -m rho.study <stage> ...`` becomes a thin
client: it sends its arguments, working directory, environment and its stdout/stderr file
descriptors; the server forks a child that runs the stage exactly as the command line would
(same ``main``), writing straight to the client's terminal or log, and the client exits with the
child's exit status.  Nothing changes for dvc: the stage command and its outputs are the same.

Safety rules:

* the client falls back to running the stage itself when no server answers, or when the server
  finds that any ``rho`` source file changed since it started (a stale server never runs old code:
  dvc hashes the code as dependencies);
* when the client dies (Ctrl-C, ``kill``, dvc interrupted), the server kills the stage's child, as
  if the stage process itself had been killed; atomic outputs and checkpoints make that safe;
* the server never runs torch work itself (forking after torch has started its thread pools is
  unsafe), handles one stage at a time, and exits after ``idle_timeout`` seconds without a client.

Usage (the test suite does this around its ``dvc repro`` of the smoke DAG)::

    python -m rho.study serve --socket /tmp/rho.sock &
    RHO_STUDY_SERVER=/tmp/rho.sock dvc repro
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

ENV_VAR = "RHO_STUDY_SERVER"
_STARTED = b"S"  # sent to the client when its stage is taken (before the fork)
_MAX_MESSAGE = 1 << 22

#: Modules imported once by the server so that stage children start warm.
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "rho.train.loop",
    "rho.scoring",
    "rho.evaluate",
    "rho.study.stages",
    "rho.data.miniature.world",
    "papermill",
)


def source_fingerprint(root: str | os.PathLike | None = None) -> tuple[tuple[str, int, int], ...]:
    """``(path, mtime_ns, size)`` of every ``.py`` file of the ``rho`` package (sorted)."""
    pkg = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    out = []
    for p in sorted(pkg.rglob("*.py")):
        st = p.stat()
        out.append((str(p.relative_to(pkg)), st.st_mtime_ns, st.st_size))
    return tuple(out)


# ------------------------------------------------------------------------------------- client
def run_via_server(argv: Sequence[str], socket_path: str | None = None) -> int | None:
    """Run ``python -m rho.study <argv>`` in the server at ``socket_path`` (default: ``$RHO_STUDY_SERVER``).

    Returns the stage's exit status, or ``None`` when there is no usable server (then the caller
    runs the stage itself).
    """
    path = socket_path or os.environ.get(ENV_VAR)
    if not path:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    with sock:
        sys.stdout.flush()
        sys.stderr.flush()
        request = {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}
        payload = json.dumps(request).encode()
        try:
            socket.send_fds(
                sock, [len(payload).to_bytes(8, "big") + payload], [sys.stdout.fileno(), sys.stderr.fileno()]
            )
            started = sock.recv(1) == _STARTED
            reply = _read_all(sock)  # the socket stays open while the stage runs: closing it cancels it
        except OSError:  # e.g. the server closed its listener (idle timeout) with us in its queue
            started, reply = False, b""
    if not started:
        return None  # refused or never taken (stale sources, another checkout): run the stage here
    if not reply:  # the server took the stage and died: never run it a second time beside a stray child
        print(
            f"rho.study: the server at {path} closed the connection without an exit status; "
            "the stage did not finish (run it again)",
            file=sys.stderr,
        )
        return 1
    return int(json.loads(reply.decode())["code"])


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------------- server
def serve(
    socket_path: str | os.PathLike,
    main: Callable[[list[str]], int],
    idle_timeout: float = 900.0,
    preload: Sequence[str] = PRELOAD,
    watch: str | os.PathLike | None = None,
) -> None:
    """Serve stage commands on ``socket_path`` until ``idle_timeout`` seconds pass without a client.

    ``main`` is the stage entry point (``rho.study.__main__.main``) called in each forked child;
    ``watch`` the source folder whose change makes the server stop (default: the ``rho`` package).
    Requests from a working directory with another ``rho`` package are refused (the client then
    runs the stage itself).
    """
    import importlib

    for name in preload:
        importlib.import_module(name)
    package = Path(__file__).resolve().parents[1]
    watched = Path(watch) if watch is not None else package
    fingerprint = source_fingerprint(watched)
    path = Path(socket_path)
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket file of a dead server
        else:
            probe.close()
            raise RuntimeError(f"a server already listens on {path}; stop it or choose another --socket")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    listener.settimeout(idle_timeout)
    print(f"rho.study server: listening on {path} (pid {os.getpid()})", file=sys.stderr, flush=True)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                break
            with conn:
                conn.settimeout(None)
                if not _handle(
                    conn, listener, main, lambda: source_fingerprint(watched) == fingerprint, package
                ):
                    break
    finally:
        listener.close()
        path.unlink(missing_ok=True)


def _handle(
    conn: socket.socket,
    listener: socket.socket,
    main: Callable[[list[str]], int],
    fresh: Callable[[], bool],
    package: Path,
) -> bool:
    """Run one request; returns False when the server must stop (its sources changed)."""
    data, fds, _, _ = socket.recv_fds(conn, _MAX_MESSAGE, 2)
    size = int.from_bytes(data[:8], "big") if len(data) >= 8 else 0
    while len(data) < 8 + size and (more := conn.recv(_MAX_MESSAGE)):
        data += more
    try:
        request = json.loads(data[8 : 8 + size].decode())
        if len(fds) != 2:
            raise ValueError(f"expected 2 file descriptors, got {len(fds)}")
    except ValueError as exc:
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"status": "error", "error": str(exc)}).encode())
        return True
    local = Path(request["cwd"]) / "rho"
    if local.is_dir() and local.resolve() != package:
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"status": "foreign", "served": str(package)}).encode())
        return True
    if not fresh():
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"status": "stale"}).encode())
        return False
    sys.stdout.flush()
    sys.stderr.flush()
    server_pid = os.getpid()
    conn.sendall(_STARTED)
    pid = os.fork()
    if pid == 0:  # the stage, as `python -m rho.study <argv>` would run it
        code = 1
        try:
            _die_with_parent(server_pid)
            conn.close()
            listener.close()
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            for fd in fds:
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            os.environ.pop(ENV_VAR, None)  # the child runs the stage itself, never asks the server
            sys.argv = ["python -m rho.study", *request["argv"]]
            code = int(main(list(request["argv"])) or 0)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:  # noqa: BLE001 - report every failure as the process would
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    for fd in fds:
        os.close(fd)
    code = _wait(pid, conn)
    if code is not None:
        conn.sendall(json.dumps({"status": "done", "code": code}).encode())
    return True


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when the server dies (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the client still reports the lost stage
        pass
    if os.getppid() != parent:  # the server died before the call above took effect
        os._exit(1)


def _wait(pid: int, conn: socket.socket) -> int | None:
    """Wait for the child; kill it if the client goes away first (returns None then)."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell reports
        readable, _, _ = select.select([conn], [], [], 0.05)
        if readable and not conn.recv(1, socket.MSG_PEEK):  # EOF: the client is gone
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
