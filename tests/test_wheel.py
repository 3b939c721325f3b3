"""depthbench installed from its wheel, not the checkout: the wheel carries the shipped tables and
the data, the installed package replays a default problem from any directory, lists its tables,
and never writes into its installed files."""

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
# What a build reads (building in the checkout would leave build/ and *.egg-info there).
SOURCES = ("pyproject.toml", "README.md", "oracle", "problems", "solvers", "bench", "surrogate_tables")


def run(command, **options):
    done = subprocess.run(command, capture_output=True, text=True, **options)
    assert done.returncode == 0, f"{' '.join(map(str, command))} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


def state(directory: Path) -> dict:
    """Every file's bytes and the directory's modification time (a file made and removed again,
    such as a lock, changes it)."""
    files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(directory.iterdir())
             if path.is_file()}
    return {"files": files, "mtime": directory.stat().st_mtime_ns}


def build_wheel(directory: Path) -> Path:
    source = directory / "source"
    source.mkdir()
    for name in SOURCES:
        if (REPOSITORY / name).is_dir():
            shutil.copytree(REPOSITORY / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.lock", "*.journal", "*.tmp*"))
        else:
            shutil.copy2(REPOSITORY / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(directory / "dist")])
    (wheel,) = (directory / "dist").glob("depthbench-*.whl")
    return wheel


def install(wheel: Path, venv: Path) -> Path:
    """A fresh virtual environment holding the wheel alone; the libraries come from this
    interpreter's site-packages through a .pth line added after the install (a plain path: the
    .pth files there, among them the checkout's editable hook, are not run)."""
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    site_packages = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # --target: this pip installs there and leaves its own environment alone.
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site_packages),
         str(wheel)])
    (site_packages / "libraries-of-the-test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_the_installed_wheel_replays_from_its_shipped_tables_and_never_writes_them(tmp_path):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(path.name for path in (REPOSITORY / "surrogate_tables").glob("*.h5"))
    assert {f"surrogate_tables/{name}" for name in [*shipped, "README.md"]} <= set(names)
    assert {f"problems/data/{path.name}" for path in (REPOSITORY / "problems" / "data").iterdir()} <= set(names)

    python = install(wheel, tmp_path / "venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    user_tables = tmp_path / "user-tables"
    environment = {**{key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
                   "HOME": str(tmp_path), "DEPTHBENCH_TABLES": str(user_tables)}
    where = run([str(python), "-c", "import bench, problems.table_directories as t, importlib.metadata as m; "
                 "print(bench.__file__); print(t.SHIPPED_TABLES); print(m.version('depthbench'))"],
                cwd=elsewhere, env=environment).split()
    installed = Path(where[1])
    assert all(Path(path).is_relative_to(tmp_path / "venv") for path in where[:2]), where
    assert sorted(path.name for path in installed.glob("*.h5")) == shipped

    before = state(installed)
    for path in [*installed.iterdir(), installed]:  # as an installation owned by another user
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        run([str(python), "-m", "bench", "run", "--k", "4", "--solvers", "greedy,oneshot", "--seeds", "0",
             "--problem", "smollm2-135m/ppl", "--out", str(tmp_path / "out")], cwd=elsewhere, env=environment)
        listing = run([str(python), "-m", "bench", "list"], cwd=elsewhere, env=environment)
    finally:
        for path in [*installed.iterdir(), installed]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    assert f"shipped (read-only) tables in {installed}:" in listing
    assert all(name in listing for name in shipped) and f"user tables in {user_tables}: none" in listing
    assert (tmp_path / "out" / "results.jsonl").exists()
    assert state(installed) == before and not user_tables.exists()
