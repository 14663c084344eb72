"""Command line of the study's pipeline stages (called by ``dvc.yaml``)::

    python -m rho.study data                 build the world of the profile
    python -m rho.study train <run>          base | base_large | reference | a run of params.yaml
    python -m rho.study score <scorer>       a scorer of params.yaml (e.g. rm_owm)
    python -m rho.study evaluate <run>       evaluate a run's final model (and its snapshots)
    python -m rho.study notebook <name> [--part PART]   execute notebooks/<name>.ipynb (papermill, kernel
                                             `rho`); first write the part's training_losses.csv
    python -m rho.study serve [--socket PATH]  a fork server that runs the stages above warm

Options: ``--params params.yaml`` and ``--profile NAME`` (overrides ``profile`` in the file).
``params.yaml`` is checked whole against its schema (:mod:`rho.study.schema`) before any stage
works.  With ``RHO_STUDY_SERVER=PATH`` set (``default``: the server's private default socket), a
stage runs in the server at PATH when one of this user listens there (see :mod:`rho.study.server`),
else in this process.  SIGTERM stops a stage like Ctrl-C does: its cleanup runs (exit 143; 130
for Ctrl-C).
"""

from __future__ import annotations

import argparse
import signal
import sys

from rho.study import server


def main(argv: list[str] | None = None) -> int:
    """Run one stage (in the fork server when ``$RHO_STUDY_SERVER`` names a live one)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] != ["serve"]:
        code = server.run_via_server(args_in)
        if code is not None:
            return code
    ap = argparse.ArgumentParser(
        prog="python -m rho.study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("stage", choices=["data", "train", "score", "evaluate", "notebook", "serve"])
    ap.add_argument("name", nargs="?", help="run or scorer name")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--part", default=None, help="notebook: the results/<profile>/<part> it writes")
    ap.add_argument(
        "--socket",
        default=None,
        help="serve: the Unix socket to listen on, in a private directory (default: "
        "$XDG_RUNTIME_DIR/rho/study.sock, else <tempdir>/rho-<uid>/study.sock)",
    )
    ap.add_argument(
        "--idle-timeout", type=float, default=900.0, help="serve: exit after this many idle seconds"
    )
    args = ap.parse_args(args_in)
    if args.stage == "serve":
        try:
            server.serve(args.socket, main, idle_timeout=args.idle_timeout)
        except server.ServerError as exc:
            print(f"rho.study serve: {exc}", file=sys.stderr)
            return 2
        return 0
    from rho.study.config import StudyError, check_name

    try:
        if args.name is not None:
            check_name(args.stage, args.name)
        if args.part is not None:
            check_name("--part", args.part)
    except StudyError as exc:
        ap.error(str(exc))
    if args.stage != "data" and not args.name:
        ap.error(f"`{args.stage}` needs a run or scorer name")
    previous = _terminate_as_interrupt()
    try:
        _run_stage(args)
    except KeyboardInterrupt:
        code = 143 if _TERMINATED else 130
        print(
            f"rho.study: {args.stage} interrupted ({'SIGTERM' if code == 143 else 'SIGINT'}); "
            "its partial outputs were removed",
            file=sys.stderr,
        )
        return code
    finally:
        if previous is not None:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    return 0


_TERMINATED: list[int] = []


def _terminate_as_interrupt() -> dict[int, object] | None:
    """Make SIGTERM and SIGINT raise ``KeyboardInterrupt`` directly, so the stage's cleanup runs.

    Python's default SIGTERM ends the process without running ``finally`` blocks: a notebook stage
    would leave partial results.  SIGINT gets the same plain handler instead of Python's default
    one, which some event-loop runners replace while they run (they cancel their task instead of
    raising, and a notebook cell that blocks then outlives the interrupt).  Returns the previous
    handlers by signal (None outside the main thread).
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    _TERMINATED.clear()

    def handler(signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM:
            _TERMINATED.append(signum)
        raise KeyboardInterrupt

    return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}


def _run_stage(args: argparse.Namespace) -> None:
    from rho.study import stages
    from rho.study.config import Study

    study = Study.load(args.params, profile=args.profile)
    if args.stage == "data":
        stages.build_data(study)
    elif args.stage == "train":
        stages.train_run(study, args.name)
    elif args.stage == "score":
        stages.score(study, args.name)
    elif args.stage == "evaluate":
        stages.evaluate_run(study, args.name)
    else:
        from rho.study.curves import export_training_losses
        from rho.study.notebooks import run_notebook

        if args.part is not None:  # first: the notebook can show it, and its failure removes it
            export_training_losses(study, args.part)
        run_notebook(study, args.name, part=args.part)


if __name__ == "__main__":
    sys.exit(main())
