"""Execute a study notebook with papermill, all or nothing.

The executed notebook is written to ``outputs/<profile>/<name>.ipynb`` only if every cell ran;
on failure, Ctrl-C (SIGINT) or SIGTERM (``python -m rho.study`` turns it into an interrupt) the
kernel is stopped first, then the part's ``results/<profile>/<part>/`` directory is removed (so no
partial result file is left behind) and the failed notebook is kept as
``outputs/<profile>/<name>.failed.ipynb`` for inspection; no temporary file is left.  Further
interrupts during that cleanup are ignored so it always completes.

Notebooks run in the project kernel ``rho`` (:func:`ensure_kernel`): the interpreter running the
stage, whatever kernel a user's Jupyter calls ``python3``; cell outputs are logged as they come.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from rho.study.config import Study, check_name

#: The project kernel: this interpreter (``python -m ipykernel install --sys-prefix --name rho``).
KERNEL_NAME = "rho"
_log = logging.getLogger(__name__)


def kernel_dir(prefix: str | os.PathLike | None = None) -> Path:
    """Where the kernelspecs of an environment live: ``<prefix>/share/jupyter/kernels``."""
    return Path(sys.prefix if prefix is None else prefix) / "share" / "jupyter" / "kernels"


def kernel_spec() -> dict:
    """The ``kernel.json`` of the project kernel: ipykernel on this interpreter (as ``ipykernel install`` writes it)."""
    try:
        from ipykernel.kernelspec import get_kernel_dict

        spec = dict(get_kernel_dict())
    except ImportError:  # papermill needs ipykernel to run the kernel anyway; the spec alone does not
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "language": "python",
            "metadata": {"debugger": True},
        }
    spec["display_name"] = f"rho (Python {sys.version_info.major}.{sys.version_info.minor})"
    return spec


def runs_this_interpreter(argv: object) -> bool:
    """Whether a kernelspec's ``argv`` starts ipykernel on this interpreter (any flags between)."""
    if not isinstance(argv, list) or not argv or "ipykernel_launcher" not in argv:
        return False
    # not realpath: a virtualenv's python links to the base interpreter, but it is its own environment
    return os.path.abspath(str(argv[0])) == os.path.abspath(sys.executable)


def ensure_kernel(prefix: str | os.PathLike | None = None) -> Path:
    """Install the ``rho`` kernelspec into ``prefix`` (default: this environment) unless it is there.

    Idempotent: a kernelspec whose ``argv`` already runs this interpreter is left untouched (also
    one written by ``python -m ipykernel install --sys-prefix --name rho``).
    Atomic: a new kernelspec is written in a temporary folder renamed into place (a concurrent
    installer's rename wins, with the same content); a stale ``kernel.json`` (another interpreter)
    is replaced by ``os.replace``.  Returns the kernelspec folder.  Raises ``OSError`` when the
    prefix is not writable.
    """
    spec = kernel_spec()
    kernels = kernel_dir(prefix)
    target = kernels / KERNEL_NAME
    if runs_this_interpreter(_installed_argv(target)):
        return target
    kernels.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{KERNEL_NAME}-", dir=kernels))
    try:
        (tmp / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, target)  # atomic; fails if target exists (e.g. another installer won)
            return target
        except OSError:
            if not target.is_dir():
                raise
        if not runs_this_interpreter(_installed_argv(target)):
            os.replace(tmp / "kernel.json", target / "kernel.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _installed_argv(target: Path) -> list[str] | None:
    try:
        return json.loads((target / "kernel.json").read_text(encoding="utf-8")).get("argv")
    except (OSError, ValueError, AttributeError):
        return None


def _kernel_manager(kernel: str | None) -> tuple[str, object]:
    """``(kernel name, KernelManager)``: the project kernel unless ``kernel`` names another one."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    if kernel is None:
        try:
            kernels = ensure_kernel().parent
        except OSError as exc:  # a read-only environment: Jupyter's python3 (jupyter_client maps it here)
            _log.warning(
                "cannot install the %r kernel into %s (%s); using python3", KERNEL_NAME, sys.prefix, exc
            )
            return "python3", KernelManager(kernel_name="python3")
        # only this environment's kernelspecs: a user's own `rho` kernel must not shadow it
        ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
        return KERNEL_NAME, KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
    return kernel, KernelManager(kernel_name=kernel)


def run_notebook(study: Study, name: str, part: str | None = None, kernel: str | None = None) -> Path:
    """Execute ``notebooks/<name>.ipynb`` for the study's profile; return the executed notebook.

    ``kernel``: a Jupyter kernel name; default the project kernel ``rho`` (:func:`ensure_kernel`).
    """
    import papermill as pm

    check_name("notebook", name)
    if part is not None:
        check_name("--part", part)
    src = study.root / "notebooks" / f"{name}.ipynb"
    if not src.is_file():
        raise FileNotFoundError(
            f"no notebook {src}; expected one of {sorted(p.stem for p in src.parent.glob('*.ipynb'))}"
        )
    out = study.root / "outputs" / study.profile / f"{name}.ipynb"
    failed = out.with_suffix(".failed.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{name}.{os.getpid()}.tmp.ipynb"  # papermill wants the .ipynb suffix
    kernel, km = _kernel_manager(kernel)  # ours, so that we can be sure it is dead before cleaning up
    try:
        with _cell_output_logged():
            pm.execute_notebook(
                str(src),
                str(tmp),
                parameters={"profile": study.profile, "params_file": "params.yaml"},
                kernel_name=kernel,
                language="python",
                cwd=str(study.root),
                progress_bar=True,
                log_output=True,
                km=km,
            )
        _stop_kernel(km)  # nbclient leaves running a kernel it did not create
        os.replace(tmp, out)
    except BaseException:
        with _signals_ignored():
            _stop_kernel(km)
            if tmp.exists():
                os.replace(tmp, failed)  # the failed notebook, whole (papermill saved it after each cell)
            if part is not None:
                shutil.rmtree(study.results_dir / part, ignore_errors=True)
        raise
    if failed.exists():
        os.remove(failed)
    return out


@contextlib.contextmanager
def _cell_output_logged() -> Iterator[None]:
    """Show papermill's cell log (cell markers, results) on stderr unless logging is configured already."""
    logger = logging.getLogger("papermill")
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _stop_kernel(km: object) -> None:
    """Kill the notebook's kernel (and its process group) if it still runs: it may still be writing results.

    The kernel is killed directly, not through jupyter's event loop: after an interrupt that loop
    still holds the interrupted cell's wait, and nbclient leaves a kernel it did not create running.
    """
    proc = getattr(getattr(km, "provisioner", None), "process", None) or getattr(km, "kernel", None)
    if proc is None:
        return
    with contextlib.suppress(OSError):
        if os.getpgid(proc.pid) == proc.pid:  # jupyter starts kernels in their own session
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()
    with contextlib.suppress(Exception):
        proc.wait(timeout=30)
    with contextlib.suppress(Exception):
        km.cleanup_connection_file()  # type: ignore[attr-defined]


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM for the duration (cleanup must finish); a no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
