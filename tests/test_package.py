"""The installed package: one top-level name, every module importable, the CLI, and the layers.

A wheel is built from this checkout and installed into a fresh virtualenv outside it. Its
dependencies come from the project's own .venv (a path entry, so that environment's editable
install of Driftway is not seen), which keeps the test offline and quick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]


class Installed:
    """A virtualenv outside the checkout with the wheel installed."""

    def __init__(self, home: Path, wheel: Path) -> None:
        self.home, self.wheel = home, wheel
        self.python = home / "bin" / "python"
        purelib = subprocess.run(
            [str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True, text=True, check=True).stdout.strip()
        self.site = Path(purelib)

    def run(self, *args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("DRIFTWAY_", "PYTHONPATH"))}
        return subprocess.run(list(args), cwd=cwd or self.home, capture_output=True, text=True,
                              timeout=300, env={**clean, **(env or {})})


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "driftway"  # setuptools builds in the tree
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".driftway", "build", "libs", "*.egg-info", "__pycache__", "results"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(out), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next(out.glob("driftway-*.whl"))
    home = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True)
    env = Installed(home, wheel)
    env.site.mkdir(parents=True, exist_ok=True)
    # The dependencies: this environment's site-packages as a plain path entry (its .pth files,
    # among them the editable finder of the checkout, are not processed that way).
    (env.site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(env.python), "install",
                           "-q", "--no-deps", str(wheel)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    yield env


def test_the_wheel_installs_one_top_level_package(installed: Installed) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"driftway", next(t for t in tops if t.endswith(".dist-info"))}
    for folder in ("streams", "consumers", "schemas"):  # the card's folders, inside driftway/
        assert any(n.startswith(f"driftway/{folder}/") for n in names)
    assert "driftway/schemas/json/raw.schema.json" in names
    assert "driftway/schemas/sql/001_tables.sql" in names
    assert not any(n.startswith("driftway/deploy") for n in names)


def test_every_module_imports_from_the_installed_wheel_and_the_cli_runs(
    installed: Installed,
) -> None:
    script = (
        "import importlib, pkgutil, driftway\n"
        "names = [m.name for m in pkgutil.walk_packages(driftway.__path__, 'driftway.')]\n"
        "for name in names:\n"
        "    module = importlib.import_module(name)\n"
        f"    assert module.__file__.startswith({str(installed.site)!r}), module.__file__\n"
        "print(len(names))\n"
    )
    done = installed.run(str(installed.python), "-c", script)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 25
    for package in PACKAGES:  # every package pyproject declares is in the installed tree
        assert (installed.site / package.replace(".", "/")).is_dir(), package
    cli = installed.run(str(installed.home / "bin" / "driftway"), "--help")
    assert cli.returncode == 0, cli.stderr
    assert "Usage: driftway" in cli.stdout and "demo" in cli.stdout
    schemas = installed.run(str(installed.python), "-c",
                            "from importlib import resources; print(resources.files("
                            "'driftway.schemas').joinpath('sql/001_tables.sql').is_file())")
    assert schemas.stdout.strip() == "True", schemas.stderr


def lint_imports(installed: Installed,
                 tree: Path | None = None) -> subprocess.CompletedProcess[str]:
    """import-linter's contracts (from pyproject.toml) on the installed package, or on a copy
    of it at `tree`."""
    env = {"PYTHONPATH": str(tree)} if tree is not None else {}
    return installed.run(str(installed.python), "-c",
                         "import sys; from importlinter.cli import lint_imports_command; "
                         "sys.exit(lint_imports_command())",
                         str(ROOT / "pyproject.toml"), "--no-cache",
                         cwd=tree, env=env)


def test_the_layers_hold(installed: Installed) -> None:
    done = lint_imports(installed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("files, broken", [
    ({"logic/_upward.py": "import driftway.app.cli\n"}, "Layers"),
    ({"io/_upward.py": "from driftway.streams import scoring\n"}, "Layers"),
    ({"logic/_a.py": "from driftway.logic import _b\n",
      "logic/_b.py": "from driftway.logic import _a\n"}, "No import cycles"),
])
def test_an_import_up_a_layer_or_around_a_cycle_breaks_a_contract(
    installed: Installed, tmp_path: Path, files: dict[str, str], broken: str,
) -> None:
    shutil.copytree(installed.site / "driftway", tmp_path / "driftway")
    for name, text in files.items():
        (tmp_path / "driftway" / name).write_text(text)
    done = lint_imports(installed, tmp_path)
    assert done.returncode != 0
    assert "0 broken" not in done.stdout
    assert broken in done.stdout.split("Broken contracts", 1)[1]
