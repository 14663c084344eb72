"""rho.study.server: stage commands run in a warm fork server, exactly as their own process would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers_server import client_cmd, run_client

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
SERVER = """
import sys
sys.path.insert(0, {tests!r})
from _helpers_server import main
from rho.study import server
server.serve({sock!r}, main, idle_timeout=120, preload=(), watch={watch!r})
"""


def _env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), **extra)


@pytest.fixture
def served(tmp_path):
    sock, watch = tmp_path / "s.sock", tmp_path / "src"
    watch.mkdir()
    (watch / "a.py").write_text("x = 1\n")
    code = SERVER.format(tests=str(TESTS), sock=str(sock), watch=str(watch))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not sock.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield sock, watch, proc
    proc.kill()
    proc.wait()


def _client(sock: Path, *argv: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess:
    return run_client(_env(RHO_STUDY_SERVER=str(sock), **env), *argv, cwd=cwd)


def _stage_pid(pidfile: Path) -> int:
    """The pid a sleeping stage wrote to ``pidfile`` (waits up to 30 s for it)."""
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the stage did not start"
        time.sleep(0.05)
    return int(pidfile.read_text())


def _assert_gone(pid: int, message: str) -> None:
    """Wait up to 10 s for process ``pid`` to be gone."""
    deadline = time.monotonic() + 10
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def test_stage_output_and_exit_status_reach_the_client(served):
    sock, _, _ = served
    res = _client(sock, "echo", "hello", "7")
    assert res.returncode == 7 and res.stdout == "hello\n" and "to stderr" in res.stderr


def test_stage_runs_in_the_clients_directory_and_environment(served, tmp_path):
    sock, _, _ = served
    res = _client(sock, "where", cwd=tmp_path, RHO_TEST_VALUE="abc")
    assert res.returncode == 0
    assert res.stdout.split() == [str(tmp_path), "abc", "None"]  # the child never calls the server


def test_a_failing_stage_exits_1_with_its_traceback(served):
    res = _client(served[0], "fail")
    assert res.returncode == 1 and "ValueError: the stage broke" in res.stderr


def test_without_a_server_the_client_runs_the_stage_itself(tmp_path):
    assert _client(tmp_path / "nobody.sock", "echo", "x", "0").returncode == 99


def test_killing_the_client_kills_the_stage(served, tmp_path):
    sock, _, _ = served
    pidfile = tmp_path / "pid"
    client = subprocess.Popen(
        client_cmd("sleep", str(pidfile)), cwd=ROOT, env=_env(RHO_STUDY_SERVER=str(sock))
    )
    stage = _stage_pid(pidfile)
    client.kill()
    client.wait()
    _assert_gone(stage, "the stage outlived its client")
    assert _client(sock, "echo", "still here", "0").stdout == "still here\n"


def test_another_checkout_is_refused(served, tmp_path):
    (tmp_path / "rho").mkdir()
    assert _client(served[0], "echo", "x", "0", cwd=tmp_path).returncode == 99


def test_changed_sources_stop_the_server_and_the_client_falls_back(served):
    sock, watch, proc = served
    assert _client(sock, "echo", "x", "0").returncode == 0
    (watch / "a.py").write_text("x = 22\n")
    assert _client(sock, "echo", "x", "0").returncode == 99
    assert proc.wait(timeout=10) == 0 and not sock.exists()


def test_a_dead_server_takes_its_stage_along_and_the_client_fails(served, tmp_path):
    sock, _, proc = served
    pidfile = tmp_path / "pid"
    client = subprocess.Popen(
        client_cmd("sleep", str(pidfile)),
        cwd=ROOT,
        env=_env(RHO_STUDY_SERVER=str(sock)),
        stderr=subprocess.PIPE,
        text=True,
    )
    stage = _stage_pid(pidfile)
    proc.kill()
    proc.wait()
    _, err = client.communicate(timeout=30)
    assert client.returncode == 1 and "without an exit status" in err  # not re-run beside the stage
    _assert_gone(stage, "the stage outlived its server")
