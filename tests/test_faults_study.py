"""Fault injection for the study's stages (issue 14): the stage server trusts only its owner,
interrupts of notebook stages leave nothing half-written, bad names and task YAMLs are refused.

Each test reproduces an attack or a fault on small stand-ins (a fake notebook, the test stage entry
point of ``_helpers_server``), never the real study.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from _helpers_server import client_cmd, run_client

from rho.study import server

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
NOBODY = 65534
SERVER = """
import sys
sys.path.insert(0, {tests!r})
from rho.study import server
if {real!r}:
    from rho.study.__main__ import main
    preload = ("papermill",)
else:
    from _helpers_server import main
    preload = ()
server.serve({sock!r}, main, idle_timeout=120, preload=preload, owner={owner!r}, grace=20)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != server.ENV_VAR}
    return dict(env, PYTHONPATH=str(ROOT), **extra)


def _wait_for(pred, message: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _start_server(
    sock: Path, *, owner: int | None = None, real: bool = False, cwd: Path = ROOT, umask: int = -1
) -> subprocess.Popen:
    code = SERVER.format(tests=str(TESTS), sock=str(sock), owner=owner, real=real)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, env=_env(), stderr=subprocess.PIPE, umask=umask
    )
    _wait_for(lambda: sock.exists() or proc.poll() is not None, "the server did not start")
    assert proc.poll() is None, proc.stderr.read().decode()
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


@pytest.fixture
def served(tmp_path):
    sock = tmp_path / "run" / "s.sock"
    proc = _start_server(sock)
    yield sock, proc
    _stop(proc)


def _client(sock: Path, *argv: str, cwd: Path = ROOT, timeout: float = 60, **env: str):
    return run_client(_env(RHO_STUDY_SERVER=str(sock), **env), *argv, cwd=cwd, timeout=timeout)


def _raw(sock: Path, payload: bytes, fds: list[int] | None = None) -> bytes:
    """Send raw bytes (with optional descriptors), half-close, and return everything the server answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(sock))
        try:
            if fds:
                socket.send_fds(s, [payload], fds)
            else:
                s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):  # the server dropped us before reading: fine
            return b""
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # closed with our request unread: nothing more comes
            pass
    return b"".join(chunks)


def _framed(obj: object) -> bytes:
    data = json.dumps(obj).encode()
    return len(data).to_bytes(8, "big") + data


# ----------------------------------------------------------------------- the server's socket
def test_socket_is_private_whatever_the_umask(tmp_path):
    sock = tmp_path / "run" / "s.sock"
    proc = _start_server(sock, umask=0)
    try:
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    finally:
        _stop(proc)


def test_default_socket_is_per_user_never_a_shared_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert server.default_socket_path() == tmp_path / "rho" / "study.sock"
    assert server.resolve_socket_path("default") == tmp_path / "rho" / "study.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    path = server.default_socket_path()
    assert path.parent.name == f"rho-{os.geteuid()}"


def test_the_default_socket_serves_clients_that_name_it_default(tmp_path):
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    code = SERVER.format(tests=str(TESTS), sock=None, owner=None, real=False)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(XDG_RUNTIME_DIR=str(runtime)), stderr=subprocess.PIPE
    )
    sock = runtime / "rho" / "study.sock"
    try:
        _wait_for(lambda: sock.exists() or proc.poll() is not None, "the server did not start")
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        res = _client(Path("default"), "echo", "via default", "0", XDG_RUNTIME_DIR=str(runtime))
        assert res.returncode == 0 and res.stdout == "via default\n"
    finally:
        _stop(proc)


def test_server_refuses_a_socket_directory_others_can_enter(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    with pytest.raises(server.ServerError, match="open to other users"):
        server.serve(shared / "rho.sock", lambda argv: 0, preload=(), idle_timeout=1)
    assert not (shared / "rho.sock").exists()


def test_sigterm_stops_the_server_and_its_stages(served, tmp_path):
    sock, proc = served
    pidfile = tmp_path / "pid"
    client = subprocess.Popen(
        client_cmd("sleep", str(pidfile)), cwd=ROOT, env=_env(RHO_STUDY_SERVER=str(sock))
    )
    _wait_for(lambda: pidfile.exists() and pidfile.read_text(), "the stage did not start")
    stage = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0 and not sock.exists()
    assert (
        client.wait(timeout=30) == 128 + signal.SIGTERM
    )  # the stage got SIGTERM, its status reached the client
    assert not Path(f"/proc/{stage}").exists()


# ----------------------------------------------------------------------- peer credentials
def test_server_drops_connections_of_another_uid(tmp_path):
    sock = tmp_path / "run" / "s.sock"
    proc = _start_server(sock, owner=os.geteuid() + 4242)  # we are "another user" to this server
    try:
        res = _client(sock, "where", cwd=tmp_path)
        assert res.returncode == 99 and res.stdout == ""  # refused: the stage never ran there
        r, w = os.pipe()
        request = _framed({"argv": ["echo", "pwned", "0"], "cwd": str(tmp_path), "env": {}})
        assert _raw(sock, request, [w, w]) == b""  # not one byte comes back
        os.close(w)
        assert os.read(r, 100) == b""  # the stage never ran (nothing written, no writer left)
        os.close(r)
    finally:
        _stop(proc)


def _squatter(sock: Path, record: Path, *, chown_to: int | None = None, user: int | None = None):
    """A process listening on ``sock`` that records what it receives and claims the stage passed."""
    code = f"""
import os, socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind({str(sock)!r}); os.chmod({str(sock)!r}, 0o777); s.listen(4)
if {chown_to!r} is not None:
    os.chown({str(sock)!r}, {chown_to!r}, -1)
rec = open({str(record)!r}, "ab", buffering=0)
open({str(record)!r} + ".up", "w").close()
if {user!r} is not None:
    os.setuid({user!r})
while True:
    c, _ = s.accept()
    c.settimeout(2)
    got = b""
    try:
        while chunk := c.recv(65536):
            got += chunk
            c.sendall(b'S{{"status": "done", "code": 0}}')
            break
    except OSError:
        pass
    rec.write(got)
    c.close()
"""
    proc = subprocess.Popen([sys.executable, "-c", code])
    _wait_for(lambda: Path(str(record) + ".up").exists() or proc.poll() is not None, "no squatter")
    assert proc.poll() is None
    return proc


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the squatter as another user")
def test_a_squatter_of_another_user_gets_nothing(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    sock, record = shared / "rho.sock", shared / "record"
    record.touch()
    proc = _squatter(sock, record, chown_to=NOBODY, user=NOBODY)
    try:
        res = _client(sock, "echo", "hello", "7", RHO_SECRET="hunter2")
        assert res.returncode == 99  # no faked exit status: the stage runs here instead
        assert "not a socket of uid" in res.stderr
        time.sleep(0.2)
        assert record.read_bytes() == b""  # neither argv nor the environment reached it
    finally:
        _stop(proc)


def test_the_client_checks_the_listeners_uid_before_sending(tmp_path):
    """The socket file looks right (owned by the expected uid) but another uid listens: nothing is sent."""
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    sock, record = run / "rho.sock", run / "record"
    record.touch()
    other = os.geteuid() + 4242
    if os.geteuid() == 0:
        proc = _squatter(sock, record, chown_to=other)
        expected = other  # a client of user `other` finds a socket of its own, held by root
    else:
        proc = _squatter(sock, record)
        os.chown(sock, os.geteuid(), -1)
        expected = None
    try:
        if expected is None:
            pytest.skip("needs root to give the socket file another owner")
        r = server.run_via_server(["echo", "x", "0"], str(sock), owner=expected)
        assert r is None
        time.sleep(0.2)
        assert record.read_bytes() == b""
    finally:
        _stop(proc)


# ----------------------------------------------------------------------- malformed and silent clients
@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (_framed({"argv": ["echo", "x", "0"], "env": {}}), "cwd"),
        (_framed(["echo", "x", "0"]), "JSON object"),
        ((12).to_bytes(8, "big") + b"not json at!", "not JSON"),
        (b"GET / HTTP/1.1\r\n\r\n", "limit"),
        ((100).to_bytes(8, "big") + b"{", "truncated"),
    ],
)
def test_malformed_requests_get_an_error_and_the_server_goes_on(served, payload, message):
    sock, proc = served
    r, w = os.pipe()
    try:
        reply = json.loads(_raw(sock, payload, [w, w]).decode())
    finally:
        os.close(r)
        os.close(w)
    assert reply["status"] == "error" and message in reply["error"]
    assert proc.poll() is None
    res = _client(sock, "echo", "still here", "0")
    assert res.returncode == 0 and res.stdout == "still here\n"


def test_a_silent_connection_does_not_block_other_clients(served):
    sock, _ = served
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(str(sock))
        silent.sendall((50).to_bytes(8, "big") + b"{")  # half a request, then nothing
        res = _client(sock, "echo", "served", "3", timeout=30)
        assert res.returncode == 3 and res.stdout == "served\n"


# ----------------------------------------------------------------------- interrupts of notebook stages
NOTEBOOK_CELL = """
import os, time
from pathlib import Path
out = Path("results") / profile / "fake"
out.mkdir(parents=True, exist_ok=True)
for name in ("a.csv", "b.csv", "c.csv"):
    (out / name).write_text("partial\\n")
Path("kernel.pid").write_text(str(os.getpid()))
time.sleep(120)
"""


@pytest.fixture
def repo(tmp_path):
    """A minimal study root: params.yaml, a notebook that writes 3 result files then hangs, other results."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            "profile = 'x'\nparams_file = 'params.yaml'", metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_code_cell(NOTEBOOK_CELL),
    ]
    nbformat.write(nb, root / "notebooks" / "fake.ipynb")
    keep = root / "results" / "mini" / "math_cpt" / "keep.csv"
    keep.parent.mkdir(parents=True)
    keep.write_text("other profile\n")
    return root


def _stage(root: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rho.study", "notebook", "fake", "--part", "fake", "--profile", "smoke"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _assert_clean(root: Path, kernel_pid: int) -> None:
    assert not (root / "results" / "smoke" / "fake").exists()  # no partial result file
    assert (root / "results" / "mini" / "math_cpt" / "keep.csv").read_text() == "other profile\n"
    assert [p for p in root.rglob("*") if ".tmp" in p.name] == []  # no stray temporary file
    assert (root / "outputs" / "smoke" / "fake.failed.ipynb").is_file()
    assert not (root / "outputs" / "smoke" / "fake.ipynb").exists()
    _wait_for(lambda: not Path(f"/proc/{kernel_pid}").exists(), "the kernel outlived its stage", 30)


def _kernel_pid(root: Path, proc: subprocess.Popen) -> int:
    pidfile = root / "kernel.pid"
    _wait_for(
        lambda: (pidfile.exists() and pidfile.read_text()) or proc.poll() is not None,
        "the notebook did not start",
        120,
    )
    assert proc.poll() is None, proc.stderr.read()
    time.sleep(0.3)  # papermill saves the notebook after the cell starts
    return int(pidfile.read_text())


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupting_a_notebook_stage_leaves_no_partial_results(repo, sig, code):
    proc = _stage(repo, _env())
    kernel = _kernel_pid(repo, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    _assert_clean(repo, kernel)


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, None)]
)
def test_interrupting_a_notebook_stage_through_the_server_leaves_no_partial_results(repo, sig, code):
    sock = repo.parent / "run" / "s.sock"
    srv = _start_server(sock, real=True, cwd=repo)
    try:
        proc = _stage(repo, _env(RHO_STUDY_SERVER=str(sock)))
        kernel = _kernel_pid(repo, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        if code is not None:  # the client waits for the stage's cleanup and reports its status
            assert proc.returncode == code, err[-2000:]
        else:  # the client died: the server gives the stage SIGTERM, it cleans up by itself
            _wait_for(lambda: (repo / "outputs" / "smoke" / "fake.failed.ipynb").exists(), "no cleanup", 60)
            _wait_for(lambda: not (repo / "results" / "smoke" / "fake").exists(), "results left", 30)
        _assert_clean(repo, kernel)
        assert srv.poll() is None  # the server goes on
    finally:
        _stop(srv)


@pytest.mark.parametrize("part", ["..", "", ".", "/", "../mini", "a/b", "-x"])
def test_a_bad_part_name_is_refused_before_anything_is_removed(repo, monkeypatch, part, capsys):
    from rho.study.__main__ import main

    monkeypatch.delenv(server.ENV_VAR, raising=False)
    monkeypatch.chdir(repo)
    with pytest.raises(SystemExit) as exc:
        main(["notebook", "fake", f"--part={part}", "--profile", "smoke"])
    assert exc.value.code == 2 and "bad --part name" in capsys.readouterr().err
    assert (repo / "results" / "mini" / "math_cpt" / "keep.csv").is_file()


def test_run_notebook_refuses_a_path_as_part(repo):
    from rho.study import Study, StudyError
    from rho.study.notebooks import run_notebook

    study = Study.load(repo / "params.yaml", profile="smoke")
    with pytest.raises(StudyError, match="bad --part name"):
        run_notebook(study, "fake", part="..")
    with pytest.raises(StudyError, match="bad notebook name"):
        run_notebook(study, "../fake")
    assert (repo / "results" / "mini" / "math_cpt" / "keep.csv").is_file()


# ----------------------------------------------------------------------- params.yaml: the first stage fails
def test_a_typo_in_params_fails_the_very_first_stage(repo, monkeypatch):
    from rho.study import StudyError
    from rho.study.__main__ import main

    text = re.sub(
        r"(?m)^(    )eval_limit: 500", r"\1eval_limt: 500", (repo / "params.yaml").read_text(), count=1
    )
    (repo / "params.yaml").write_text(text)
    monkeypatch.delenv(server.ENV_VAR, raising=False)
    monkeypatch.chdir(repo)
    with pytest.raises(StudyError, match=r"profiles\.mini\.eval_limt.*did you mean `eval_limit`"):
        main(["data", "--profile", "smoke"])  # another profile's typo still fails, before any work
    assert not (repo / "data").exists()


# ----------------------------------------------------------------------- lm-eval task YAMLs are data
def _task_dir(tmp_path: Path, body: str) -> Path:
    d = tmp_path / "lm_eval"
    d.mkdir()
    (d / "toy.yaml").write_text("task: toy\ndataset_path: json\n" + body)
    (d / "utils.py").write_text(
        f"open({str(tmp_path / 'pwned')!r}, 'w').close()\ndef f(doc):\n    return doc\n"
    )
    return d


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("process_docs: !function utils.f\n", "!function"),
        ("doc_to_text: !!python/name:os.system\n", "tag"),
        ("class: !function utils.f\n", "!function"),
        ("dataset_kwargs:\n  trust_remote_code: true\n", "trust_remote_code"),
        ("include: ../../elsewhere.yaml\n", "outside the task folder"),
        ("doc_to_text: \"{{ ''.__class__.__mro__ }}\"\n", "dunder"),
    ],
)
def test_lm_eval_task_yamls_that_run_code_are_refused(tmp_path, body, message):
    from rho.evaluate.harness import HarnessError, run_lm_eval

    tasks = _task_dir(tmp_path, body)
    with pytest.raises(HarnessError, match=message):
        run_lm_eval(tmp_path / "model", "toy", include_path=tasks)
    assert not (tmp_path / "pwned").exists()


def test_the_miniature_lm_eval_suite_is_plain_data(tmp_path):
    from rho.data.miniature.lm_eval_suite import write_lm_eval_suite
    from rho.evaluate.task_yaml import check_task_dir

    names = write_lm_eval_suite(tmp_path, seed=0, n_items=8)
    assert sorted(p.stem for p in check_task_dir(tmp_path)) == sorted(names)


def test_a_task_yaml_that_is_not_utf8_is_named(tmp_path):
    from rho.evaluate.harness import HarnessError, run_lm_eval

    tasks = _task_dir(tmp_path, "")
    (tasks / "bad.yaml").write_bytes(b"task: \xff\xfe\n")
    with pytest.raises(HarnessError, match=r"bad\.yaml: not valid UTF-8 YAML"):
        run_lm_eval(tmp_path / "model", "toy", include_path=tasks)
