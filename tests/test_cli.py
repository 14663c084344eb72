"""The ``rho`` console command dispatches to the ``python -m rho.<command>`` entry points."""

from __future__ import annotations

import sys
import types

import pytest

from rho import cli


def test_data_help_is_the_data_command_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: python -m rho.data" in out and "build-hub" in out


def test_unknown_command_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trian", "--x"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'" in err and "study, train, evaluate, data" in err


def test_no_command_prints_usage_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: rho <command>" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("study", "train", "evaluate", "data"))


def test_command_errors_keep_their_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["data", "no-such-subcommand"]) == 2  # argparse's error status
    assert "invalid choice" in capsys.readouterr().err
    assert cli.main(["study", "--help"]) == 0
    assert "python -m rho.study" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("behaviour", "status", "stderr"),
    [
        (lambda argv: 3, 3, ""),
        (lambda argv: None, 0, ""),
        (lambda argv: sys.exit("bad input: x"), 1, "bad input: x"),
    ],
)
def test_arguments_and_status_pass_through(monkeypatch, capsys, behaviour, status, stderr) -> None:
    seen = []
    fake = types.ModuleType("fake_entry")
    fake.main = lambda argv: seen.append(argv) or behaviour(argv)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_entry", fake)
    monkeypatch.setitem(cli.COMMANDS, "train", ("fake_entry", "x"))
    assert cli.main(["train", "--config", "run.yaml", "ratio=0.6"]) == status
    assert seen == [["--config", "run.yaml", "ratio=0.6"]]
    assert stderr in capsys.readouterr().err


def test_evaluate_input_errors_are_one_line(monkeypatch, capsys) -> None:
    def bad(argv: list[str]) -> None:
        raise ValueError("unknown task 'gsm9k'")

    fake = types.ModuleType("fake_eval")
    fake.main = bad  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_eval", fake)
    monkeypatch.setitem(cli.COMMANDS, "evaluate", ("fake_eval", "x"))
    assert cli.main(["evaluate", "--tasks", "gsm9k"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown task 'gsm9k'"
