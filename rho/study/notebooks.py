"""Execute a study notebook with papermill, all or nothing.

The executed notebook is written to ``outputs/<profile>/<name>.ipynb`` only if every cell ran;
on failure the part's ``results/<profile>/<part>/`` directory is removed (so no partial result
file is left behind) and the failed notebook is kept as ``outputs/<profile>/<name>.failed.ipynb``
for inspection.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rho.io import atomic_path
from rho.study.config import Study


def run_notebook(study: Study, name: str, part: str | None = None, kernel: str = "python3") -> Path:
    """Execute ``notebooks/<name>.ipynb`` for the study's profile; return the executed notebook."""
    import papermill as pm

    src = study.root / "notebooks" / f"{name}.ipynb"
    if not src.is_file():
        raise FileNotFoundError(
            f"no notebook {src}; expected one of {sorted(p.stem for p in src.parent.glob('*.ipynb'))}"
        )
    out = study.root / "outputs" / study.profile / f"{name}.ipynb"
    failed = out.with_suffix(".failed.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(out, suffix=".ipynb") as tmp:
            try:
                pm.execute_notebook(
                    str(src),
                    str(tmp),
                    parameters={"profile": study.profile, "params_file": "params.yaml"},
                    kernel_name=kernel,
                    cwd=str(study.root),
                    progress_bar=True,
                )
            except BaseException:
                if tmp.exists():
                    shutil.copyfile(tmp, failed)
                raise
    except BaseException:
        if part is not None:
            shutil.rmtree(study.results_dir / part, ignore_errors=True)
        raise
    if failed.exists():
        os.remove(failed)
    return out
