"""The ``rho`` console command: one name for the package's command lines.

    rho study ...      = python -m rho.study ...     the study's pipeline stages (dvc.yaml)
    rho train ...      = python -m rho.train ...     one training run
    rho evaluate ...   = python -m rho.evaluate ...  evaluate a model on tasks
    rho data ...       = python -m rho.data ...      build, tokenize and describe corpora

Each subcommand runs the ``main`` of that module with the remaining arguments (imported only
then, so ``rho data --help`` does not load torch); ``rho <command> --help`` shows its options.
Exit status: the command's own; 2 for an unknown command.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

#: Subcommand -> (module with ``main(argv)``, one line of help).
COMMANDS: dict[str, tuple[str, str]] = {
    "study": ("rho.study.__main__", "the study's pipeline stages (what dvc.yaml runs)"),
    "train": ("rho.train.__main__", "one training run (CLM or SLM) from a config"),
    "evaluate": ("rho.evaluate.__main__", "evaluate a model on math / multiple-choice tasks"),
    "data": ("rho.data.__main__", "build, tokenize and describe corpora"),
}
#: Errors a command reports as one line with exit status 2 (as its ``python -m`` form does).
ONE_LINE_ERRORS: dict[str, type[BaseException]] = {"evaluate": ValueError}


def usage() -> str:
    """The top-level help text."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return (
        "usage: rho <command> [args ...]\n\ncommands:\n"
        + "\n".join(lines)
        + (
            "\n\n`rho <command> --help` shows a command's options; `rho <command> ...` is `python -m rho.<command> ...`."
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rho <command> [args ...]``; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command in ("-h", "--help", "help"):
        print(usage())
        return 0
    if command == "--version":
        from rho import __version__

        print(f"rho {__version__}")
        return 0
    if command not in COMMANDS:
        print(
            f"rho: unknown command {command!r}; choose one of {', '.join(COMMANDS)} (rho --help)",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        result = module.main(rest)
    except SystemExit as exc:  # argparse's --help and errors, and commands that exit
        return _exit_status(exc.code)
    except ONE_LINE_ERRORS.get(command, ()) as exc:  # type: ignore[misc]
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _exit_status(code: object) -> int:
    """The process exit status ``sys.exit(code)`` would give (a message is printed, status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
