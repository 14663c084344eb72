"""Notebook stages run in the project kernel ``rho``; source notebooks carry no outputs."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

from rho.study import notebooks
from rho.study.notebooks import KERNEL_NAME, ensure_kernel, kernel_dir

ROOT = Path(__file__).resolve().parents[1]


def _spec(prefix: Path) -> dict:
    return json.loads((kernel_dir(prefix) / KERNEL_NAME / "kernel.json").read_text())


def test_ensure_kernel_installs_this_interpreter(tmp_path: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    target = ensure_kernel(tmp_path)
    assert target == tmp_path / "share" / "jupyter" / "kernels" / "rho"
    argv = _spec(tmp_path)["argv"]
    assert argv[0] == sys.executable and argv[-4:] == ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
    found = KernelSpecManager(kernel_dirs=[str(target.parent)]).get_kernel_spec("rho")
    assert found.argv[0] == sys.executable and found.language == "python"
    assert os.listdir(target.parent) == ["rho"]  # no temporary folder left


def test_ensure_kernel_is_idempotent(tmp_path: Path) -> None:
    path = ensure_kernel(tmp_path) / "kernel.json"
    before = path.stat()
    ensure_kernel(tmp_path)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_kernel_installed_by_ipykernel_is_kept(tmp_path: Path) -> None:
    """``python -m ipykernel install --sys-prefix --name rho`` (the Makefile) writes other flags: kept."""
    target = kernel_dir(tmp_path) / "rho"
    target.mkdir(parents=True)
    spec = {
        "argv": [
            sys.executable,
            "-Xfrozen_modules=off",
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
        ]
    }
    (target / "kernel.json").write_text(json.dumps({**spec, "display_name": "rho", "language": "python"}))
    ensure_kernel(tmp_path)
    assert _spec(tmp_path)["argv"] == spec["argv"]


def test_ensure_kernel_replaces_a_stale_kernelspec(tmp_path: Path) -> None:
    target = kernel_dir(tmp_path) / "rho"
    target.mkdir(parents=True)
    (target / "kernel.json").write_text(
        json.dumps({"argv": ["/old/venv/bin/python", "-m", "ipykernel_launcher"]})
    )
    (target / "logo-32x32.png").write_bytes(b"png")
    ensure_kernel(tmp_path)
    assert _spec(tmp_path)["argv"][0] == sys.executable
    assert sorted(os.listdir(target.parent)) == ["rho"]
    assert (target / "logo-32x32.png").is_file()  # the rest of the folder is kept


def test_concurrent_installs_agree(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def install() -> None:
        try:
            ensure_kernel(tmp_path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=install) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert os.listdir(kernel_dir(tmp_path)) == ["rho"]
    assert _spec(tmp_path)["argv"][0] == sys.executable


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_prefix_raises(tmp_path: Path) -> None:
    kernels = kernel_dir(tmp_path)
    kernels.mkdir(parents=True)
    kernels.chmod(0o500)
    try:
        with pytest.raises(OSError):
            ensure_kernel(tmp_path)
    finally:
        kernels.chmod(0o700)


def test_run_notebook_uses_the_project_kernel_and_logs_output(tmp_path: Path, monkeypatch) -> None:
    import papermill

    from rho.study import Study

    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    shutil.copy(ROOT / "notebooks" / "04_math_cpt.ipynb", repo / "notebooks" / "fake.ipynb")
    prefix = tmp_path / "env"
    monkeypatch.setattr(notebooks, "ensure_kernel", lambda: ensure_kernel(prefix))
    user = tmp_path / "user" / "kernels" / "rho"  # a user's own `rho` kernel must not be used
    user.mkdir(parents=True)
    (user / "kernel.json").write_text(
        json.dumps({"argv": ["/elsewhere/python"], "display_name": "x", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "user"))
    seen = {}

    def fake_execute(src, out, **kw):
        seen.update(kw)
        Path(out).write_text("{}")

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    study = Study.load(repo / "params.yaml", profile="smoke")
    out = notebooks.run_notebook(study, "fake", part="fake")
    assert out == repo / "outputs" / "smoke" / "fake.ipynb" and out.is_file()
    assert seen["kernel_name"] == "rho" and seen["log_output"] is True
    assert seen["km"].kernel_spec.argv[0] == sys.executable
    from jupyter_client.kernelspec import KernelSpecManager

    assert (
        KernelSpecManager().get_kernel_spec("rho").argv[0] == "/elsewhere/python"
    )  # what Jupyter alone picks
    assert (prefix / "share" / "jupyter" / "kernels" / "rho" / "kernel.json").is_file()


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_source_notebooks_carry_no_outputs(path: Path) -> None:
    """Outputs belong to the executed copies in outputs/<profile>/, not to the sources in git."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cell"
    dirty = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, (
        f"{path.name}: code cells {dirty} carry outputs or execution counts; clear them "
        "(jupyter nbconvert --clear-output --inplace) before committing"
    )
