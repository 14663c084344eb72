"""Execute a study notebook with papermill, all or nothing.

The executed notebook is written to ``outputs/<profile>/<name>.ipynb`` only if every cell ran;
on failure, Ctrl-C (SIGINT) or SIGTERM (``python -m rho.study`` turns it into an interrupt) the
kernel is stopped first, then the part's ``results/<profile>/<part>/`` directory is removed (so no
partial result file is left behind) and the failed notebook is kept as
``outputs/<profile>/<name>.failed.ipynb`` for inspection; no temporary file is left.  Further
interrupts during that cleanup are ignored so it always completes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from rho.study.config import Study, check_name


def run_notebook(study: Study, name: str, part: str | None = None, kernel: str = "python3") -> Path:
    """Execute ``notebooks/<name>.ipynb`` for the study's profile; return the executed notebook."""
    import papermill as pm
    from jupyter_client.manager import KernelManager

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
    km = KernelManager(kernel_name=kernel)  # ours, so that we can be sure it is dead before cleaning up
    try:
        pm.execute_notebook(
            str(src),
            str(tmp),
            parameters={"profile": study.profile, "params_file": "params.yaml"},
            kernel_name=kernel,
            cwd=str(study.root),
            progress_bar=True,
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
