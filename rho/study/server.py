"""A fork server for the study's stage commands: pay for importing torch/transformers once.

Every stage of ``dvc.yaml`` is a ``python -m rho.study ...`` process, and each spends ~3.5 s
importing torch and transformers before doing any work; on the ``smoke`` profile that is most of
the DAG's time.  ``python -m rho.study serve`` imports them once and waits on a Unix socket; with
``RHO_STUDY_SERVER=<socket>`` in the environment, ``python -m rho.study <stage> ...`` becomes a thin
client: it sends its arguments, working directory, environment and its stdout/stderr file
descriptors; the server forks a child that runs the stage exactly as the command line would
(same ``main``), writing straight to the client's terminal or log, and the client exits with the
child's exit status.  Nothing changes for dvc: the stage command and its outputs are the same.

Trust: the server runs whatever a client asks, as the server's user, so it serves only its owner:

* the socket lives in a private directory (owner only, mode 0700; the default is
  ``$XDG_RUNTIME_DIR/rho/study.sock``, else ``<tempdir>/rho-<uid>/study.sock``), the socket itself
  is mode 0600, and the server refuses to start in a directory that others can reach;
* the server checks every connection's peer credentials (``SO_PEERCRED``) and drops connections
  of any other uid before reading a byte; the client checks the server's credentials the same way
  (and that the socket file is its own) before sending anything, so a process squatting on the
  path gets neither the environment nor the arguments, and cannot fake an exit status;
* malformed requests get an error reply, and a connection that sends nothing is dropped after
  :data:`REQUEST_TIMEOUT` seconds without holding up anyone else (connections are served
  concurrently, one forked child per stage).

Safety rules:

* the client falls back to running the stage itself when no server answers, or when the server
  finds that any ``rho`` source file changed since it started (a stale server never runs old code:
  dvc hashes the code as dependencies);
* Ctrl-C (SIGINT) or SIGTERM of the client is forwarded to the stage, which cleans up exactly as
  it would in its own process (a notebook stage removes its partial results); when the client
  dies without a word (``kill -9``), the stage gets SIGTERM and :data:`GRACE` seconds to clean up
  before SIGKILL; when the server dies, its stages get SIGTERM;
* the server never runs torch work itself (forking after torch has started its thread pools is
  unsafe), and exits after ``idle_timeout`` seconds without a client.

Usage (the test suite does this around its ``dvc repro`` of the smoke DAG)::

    python -m rho.study serve &            # listens on the private default path
    RHO_STUDY_SERVER=default dvc repro     # `default` names that same path
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import stat
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_VAR = "RHO_STUDY_SERVER"
_STARTED = b"S"  # sent to the client when its stage is taken (before the fork)
_SIGNALS = {b"I": signal.SIGINT, b"T": signal.SIGTERM}  # client -> server: forward this signal
_MAX_MESSAGE = 1 << 22
#: Seconds a connection may take to send its whole request before it is dropped.
REQUEST_TIMEOUT = 10.0
#: Seconds a stage gets to clean up after SIGTERM (its client vanished) before SIGKILL.
GRACE = 30.0

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


class ServerError(RuntimeError):
    """The server cannot start safely (a shared socket directory, a live server on the path)."""


def source_fingerprint(root: str | os.PathLike | None = None) -> tuple[tuple[str, int, int], ...]:
    """``(path, mtime_ns, size)`` of every ``.py`` file of the ``rho`` package (sorted)."""
    pkg = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    out = []
    for p in sorted(pkg.rglob("*.py")):
        st = p.stat()
        out.append((str(p.relative_to(pkg)), st.st_mtime_ns, st.st_size))
    return tuple(out)


# ------------------------------------------------------------------------------------- trust
def default_socket_path() -> Path:
    """``$XDG_RUNTIME_DIR/rho/study.sock`` (a per-user runtime dir), else ``<tempdir>/rho-<uid>/study.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute() and Path(runtime).is_dir():
        return Path(runtime) / "rho" / "study.sock"
    return Path(tempfile.gettempdir()) / f"rho-{os.geteuid()}" / "study.sock"


def resolve_socket_path(value: str | os.PathLike | None) -> Path:
    """The socket path for ``--socket`` / ``$RHO_STUDY_SERVER``: ``None``, ``""`` or ``default`` mean the default."""
    if value is None or str(value) in ("", "default"):
        return default_socket_path()
    return Path(value)


def private_dir(path: Path, create: bool = True) -> Path:
    """Make sure ``path`` is a directory only its owner (this user) can enter; create it (0700) if missing.

    Raises :class:`ServerError` for a symlink, another owner, or any group/other permission bit.
    """
    if create and not os.path.lexists(path):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700, parents=False)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise ServerError(f"the socket directory {path} does not exist; create it with mode 0700") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ServerError(
            f"the socket directory {path} is not a directory (a symlink?); choose a private directory"
        )
    if st.st_uid != os.geteuid():
        raise ServerError(
            f"the socket directory {path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); "
            "use a directory of your own (the default --socket is private)"
        )
    if st.st_mode & 0o077:
        raise ServerError(
            f"the socket directory {path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run `chmod 700 {path}` or use the default --socket"
        )
    return path


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a connected Unix socket (``SO_PEERCRED``; None if unknown)."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("3i")))
    return uid


# ------------------------------------------------------------------------------------- client
def run_via_server(
    argv: Sequence[str], socket_path: str | None = None, *, owner: int | None = None
) -> int | None:
    """Run ``python -m rho.study <argv>`` in the server at ``socket_path`` (default: ``$RHO_STUDY_SERVER``).

    Returns the stage's exit status, or ``None`` when there is no usable server (then the caller
    runs the stage itself).  Nothing is sent unless the socket file and the listening process both
    belong to ``owner`` (default: this user).
    """
    value = socket_path if socket_path is not None else os.environ.get(ENV_VAR)
    if value is None:
        return None
    path = resolve_socket_path(value)
    owner = os.geteuid() if owner is None else owner
    try:
        st = os.lstat(path)
    except OSError:
        return None  # no server: run the stage here
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != owner:
        _warn(
            f"{path} is not a socket of uid {owner} (owner uid {st.st_uid}); ignoring it, running the stage here"
        )
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(REQUEST_TIMEOUT)
    try:
        sock.connect(str(path))
        uid = peer_uid(sock)
    except OSError:
        sock.close()
        return None
    if uid != owner:  # a squatter (or a platform without SO_PEERCRED): it gets nothing
        sock.close()
        _warn(
            f"the process listening on {path} runs as uid {uid}, not {owner}; ignoring it, running the stage here"
        )
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
            sock.settimeout(None)  # the stage may run for hours
            started = sock.recv(1) == _STARTED
            if started:
                with _forwarding_signals(sock):
                    reply = _read_all(
                        sock
                    )  # the socket stays open while the stage runs: closing it cancels it
            else:
                reply = b""
        except OSError:  # e.g. the server closed its listener (idle timeout) with us in its queue
            started, reply = False, b""
    if not started:
        return None  # refused or never taken (stale sources, another checkout): run the stage here
    try:
        return int(json.loads(reply.decode())["code"])
    except (ValueError, KeyError, TypeError):  # the server took the stage and died: never run it twice
        _warn(
            f"the server at {path} closed the connection without an exit status; "
            "the stage did not finish (run it again)"
        )
        return 1


def _warn(message: str) -> None:
    print(f"rho.study: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _forwarding_signals(sock: socket.socket) -> Iterator[None]:
    """While the stage runs, send SIGINT/SIGTERM of this client to the server (which signals the stage).

    The client keeps waiting for the stage's exit status (its cleanup included); a second signal
    ends the client at once (the server then terminates the stage itself).
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        if seen:
            raise KeyboardInterrupt
        seen.append(signum)
        with contextlib.suppress(OSError):
            sock.send(b"I" if signum == signal.SIGINT else b"T")

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------------- server
@dataclass
class _Pending:
    """A connection whose request is still arriving."""

    deadline: float
    data: bytes = b""
    fds: list[int] = field(default_factory=list)


@dataclass
class _Running:
    """A stage child and its client's connection (None once the client is gone)."""

    conn: socket.socket | None
    kill_at: float | None = None


class RequestError(ValueError):
    """A request the server cannot run (malformed JSON, wrong fields, wrong number of descriptors)."""


def parse_request(data: bytes, fds: Sequence[int]) -> dict[str, Any]:
    """Decode and check one request: ``{"argv": [str], "cwd": absolute dir, "env": {str: str}}`` + 2 fds."""
    if len(data) < 8:
        raise RequestError("truncated request")
    try:
        request = json.loads(data[8:].decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(f"the request is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise RequestError(f"the request must be a JSON object, got {type(request).__name__}")
    argv, cwd, env = request.get("argv"), request.get("cwd"), request.get("env")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise RequestError("`argv` must be a list of strings")
    if not isinstance(cwd, str) or not os.path.isabs(cwd) or not os.path.isdir(cwd):
        raise RequestError(f"`cwd` must be an existing absolute directory, got {cwd!r}")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise RequestError("`env` must be an object of strings")
    if len(fds) != 2:
        raise RequestError(f"expected 2 file descriptors (stdout, stderr), got {len(fds)}")
    return {"argv": argv, "cwd": cwd, "env": env}


def serve(
    socket_path: str | os.PathLike | None,
    main: Callable[[list[str]], int],
    idle_timeout: float = 900.0,
    preload: Sequence[str] = PRELOAD,
    watch: str | os.PathLike | None = None,
    *,
    owner: int | None = None,
    grace: float = GRACE,
) -> None:
    """Serve stage commands on ``socket_path`` (None: :func:`default_socket_path`) until ``idle_timeout``
    seconds pass without a client.

    ``main`` is the stage entry point (``rho.study.__main__.main``) called in each forked child;
    ``watch`` the source folder whose change makes the server stop (default: the ``rho`` package).
    Requests from a working directory with another ``rho`` package are refused (the client then
    runs the stage itself); connections of any uid but ``owner`` (default: this user) are dropped.
    """
    import importlib

    path = resolve_socket_path(socket_path)
    private_dir(path.parent)
    owner = os.geteuid() if owner is None else owner
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ServerError(f"{path} exists and is not a socket; choose another --socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # a stale socket file of a dead server
        else:
            raise ServerError(f"a server already listens on {path}; stop it or choose another --socket")
        finally:
            probe.close()
    for name in preload:
        importlib.import_module(name)
    package = Path(__file__).resolve().parents[1]
    watched = Path(watch) if watch is not None else package
    fingerprint = source_fingerprint(watched)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))  # created 0600 whatever the caller's umask
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    listener.listen(16)
    listener.setblocking(False)
    print(f"rho.study server: listening on {path} (pid {os.getpid()})", file=sys.stderr, flush=True)
    loop = _Loop(
        listener, path, main, lambda: source_fingerprint(watched) == fingerprint, package, owner, grace
    )
    old = {s: signal.signal(s, loop.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        loop.run(idle_timeout)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        loop.shutdown()


class _Loop:
    """The server's event loop: accept, read requests, fork stages, forward signals, reap children."""

    def __init__(
        self,
        listener: socket.socket,
        path: Path,
        main: Callable[[list[str]], int],
        fresh: Callable[[], bool],
        package: Path,
        owner: int,
        grace: float,
    ) -> None:
        self.listener: socket.socket | None = listener
        self.path, self.main, self.fresh, self.package = path, main, fresh, package
        self.owner, self.grace = owner, grace
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ, "listen")
        self.pending: dict[socket.socket, _Pending] = {}
        self.running: dict[int, _Running] = {}
        self.stop = False
        self.signalled = False
        self.wake_r, self.wake_w = os.pipe()  # a signal wakes the select() through this pipe
        os.set_blocking(self.wake_w, False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")

    def on_signal(self, signum: int, _frame: Any) -> None:
        """SIGTERM/SIGINT of the server: stop taking stages; running ones get SIGTERM and their grace."""
        self.signalled = True
        with contextlib.suppress(OSError):
            os.write(self.wake_w, b"!")

    def _on_signalled(self) -> None:
        self.signalled = False
        self.stop = True
        self.close_listener()
        for conn in list(self.pending):
            self._drop(conn)
        for pid, run in self.running.items():
            if run.kill_at is None:
                self._signal(pid, signal.SIGTERM)
                run.kill_at = time.monotonic() + self.grace

    def run(self, idle_timeout: float) -> None:
        last = time.monotonic()
        while True:
            if self.signalled:
                self._on_signalled()
            busy = bool(self.running or self.pending)
            if not busy and (self.stop or self.listener is None):
                return
            now = time.monotonic()
            if not busy and now - last >= idle_timeout:
                return
            timeout = (
                0.05
                if self.running
                else min(
                    [max(0.0, last + idle_timeout - now), *(p.deadline - now for p in self.pending.values())]
                )
            )
            for key, _ in self.sel.select(max(0.0, timeout)):
                if self.signalled:
                    break
                try:
                    if key.data == "wake":
                        os.read(self.wake_r, 64)
                    elif key.data == "listen":
                        self._accept()
                    elif key.data == "pending":
                        self._read(key.fileobj)
                    else:
                        self._client_message(key.data, key.fileobj)
                except Exception:  # noqa: BLE001 - one bad connection never stops the server
                    traceback.print_exc()
                    if key.fileobj in self.pending:
                        self._drop(key.fileobj)
                last = time.monotonic()
            if self._reap():
                last = time.monotonic()
            now = time.monotonic()
            for conn, p in list(self.pending.items()):
                if now >= p.deadline:  # silent or slow: dropped, nobody else waited for it
                    self._drop(conn)
            for pid, r in self.running.items():
                if r.kill_at is not None and now >= r.kill_at:
                    self._signal(pid, signal.SIGKILL)

    # -- connections
    def _accept(self) -> None:
        if self.listener is None:
            return
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        uid = peer_uid(conn)
        if uid != self.owner:  # not our user: not one byte is read or written
            print(f"rho.study server: refused a connection from uid {uid}", file=sys.stderr, flush=True)
            conn.close()
            return
        conn.setblocking(False)
        self.pending[conn] = _Pending(deadline=time.monotonic() + REQUEST_TIMEOUT)
        self.sel.register(conn, selectors.EVENT_READ, "pending")

    def _drop(self, conn: socket.socket) -> None:
        p = self.pending.pop(conn)
        for fd in p.fds:
            os.close(fd)
        self.sel.unregister(conn)
        conn.close()

    def _read(self, conn: socket.socket) -> None:
        p = self.pending[conn]
        try:
            data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 2)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        p.fds += fds
        p.data += data
        size = int.from_bytes(p.data[:8], "big") if len(p.data) >= 8 else None
        if size is not None and size > _MAX_MESSAGE:
            self._reply_error(conn, f"request of {size} bytes is over the {_MAX_MESSAGE} limit")
            return
        if not data and (size is None or len(p.data) < 8 + size):  # EOF before a whole request
            self._reply_error(conn, "truncated request")
            return
        if size is None or len(p.data) < 8 + size:
            return
        try:
            request = parse_request(p.data[: 8 + size], p.fds)
        except RequestError as exc:
            self._reply_error(conn, str(exc))
            return
        self._start(conn, request)

    def _reply_error(self, conn: socket.socket, message: str) -> None:
        with contextlib.suppress(OSError):
            conn.setblocking(True)
            conn.settimeout(1.0)
            conn.sendall(json.dumps({"status": "error", "error": message}).encode())
        self._drop(conn)

    def _reply(self, conn: socket.socket, obj: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            conn.setblocking(True)
            conn.settimeout(5.0)
            conn.sendall(json.dumps(obj).encode())

    # -- stages
    def _start(self, conn: socket.socket, request: dict[str, Any]) -> None:
        p = self.pending.pop(conn)
        self.sel.unregister(conn)
        local = Path(request["cwd"]) / "rho"
        status = None
        if local.is_dir() and local.resolve() != self.package:
            status = {"status": "foreign", "served": str(self.package)}
        elif self.stop or not self.fresh():
            status = {"status": "stale"}
            self.stop = True
            self.close_listener()
        if status is not None:
            for fd in p.fds:
                os.close(fd)
            self._reply(conn, status)
            conn.close()
            return
        sys.stdout.flush()
        sys.stderr.flush()
        server_pid = os.getpid()
        try:
            conn.setblocking(True)
            conn.sendall(_STARTED)
        except OSError:
            for fd in p.fds:
                os.close(fd)
            conn.close()
            return
        pid = os.fork()
        if pid == 0:  # the stage, as `python -m rho.study <argv>` would run it
            self._child(conn, p.fds, request, server_pid)
        for fd in p.fds:
            os.close(fd)
        conn.setblocking(False)
        self.running[pid] = _Running(conn)
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def _child(self, conn: socket.socket, fds: list[int], request: dict[str, Any], server_pid: int) -> None:
        code = 1
        try:
            for s in (signal.SIGTERM, signal.SIGINT):
                signal.signal(s, signal.SIG_DFL if s == signal.SIGTERM else signal.default_int_handler)
            _die_with_parent(server_pid)
            for other in [*self.pending, *(r.conn for r in self.running.values() if r.conn is not None)]:
                other.close()  # other clients' connections and descriptors are none of this stage's business
            for q in self.pending.values():
                for fd in q.fds:
                    os.close(fd)
            self.sel.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            conn.close()
            if self.listener is not None:
                self.listener.close()
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            for fd in fds:
                os.close(fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            os.environ.pop(ENV_VAR, None)  # the child runs the stage itself, never asks the server
            sys.argv = ["python -m rho.study", *request["argv"]]
            code = int(self.main(list(request["argv"])) or 0)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # noqa: BLE001 - report every failure as the process would
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _client_message(self, pid: int, conn: socket.socket) -> None:
        run = self.running.get(pid)
        if run is None or run.conn is None:
            return
        try:
            data = conn.recv(64)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client is gone: the stage gets SIGTERM, then SIGKILL after the grace period
            self.sel.unregister(conn)
            conn.close()
            run.conn = None
            if run.kill_at is None:
                self._signal(pid, signal.SIGTERM)
                run.kill_at = time.monotonic() + self.grace
            return
        for byte in data:
            sig = _SIGNALS.get(bytes([byte]))
            if sig is not None:
                self._signal(pid, sig)

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _reap(self) -> bool:
        done = False
        for pid in list(self.running):
            got, status = os.waitpid(pid, os.WNOHANG)
            if not got:
                continue
            done = True
            run = self.running.pop(pid)
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell reports
            if run.conn is not None:
                self.sel.unregister(run.conn)
                self._reply(run.conn, {"status": "done", "code": code})
                run.conn.close()
        return done

    def close_listener(self) -> None:
        """Stop accepting; remove the socket file (a later client falls back to running stages itself)."""
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None
            self.path.unlink(missing_ok=True)

    def shutdown(self) -> None:
        """Close everything; running stages get SIGTERM and the grace period, then SIGKILL."""
        self.close_listener()
        for conn in list(self.pending):
            self._drop(conn)
        deadline = time.monotonic() + self.grace
        for pid in self.running:
            self._signal(pid, signal.SIGTERM)
        while self.running and time.monotonic() < deadline:
            self._reap() or time.sleep(0.05)
        for pid in list(self.running):
            self._signal(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            run = self.running.pop(pid)
            if run.conn is not None:
                run.conn.close()
        self.sel.close()
        os.close(self.wake_r)
        os.close(self.wake_w)


def _die_with_parent(parent: int) -> None:
    """Have the kernel send SIGTERM to this child when the server dies (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the client still reports the lost stage
        pass
    if os.getppid() != parent:  # the server died before the call above took effect
        os._exit(1)
