"""The `>>>` examples in every module's docstrings, run on the modules as the package names them.

pytest's --doctest-modules would import the card's folders under their folder names (`schemas`,
`streams`), a second copy of each module; here each module is imported as `driftway.…`.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import tomllib
from pathlib import Path

import pytest

PACKAGES = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
    "tool"]["setuptools"]["packages"]


def modules() -> list[str]:
    """Every module of every package pyproject.toml declares."""
    names: list[str] = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(path) if not m.ispkg]
    return names


def examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = [test for name in modules() for test in finder.find(importlib.import_module(name))]
    return sorted((t for t in found if t.examples), key=lambda t: t.name)


@pytest.mark.parametrize("test", examples(), ids=lambda t: t.name)
def test_docstring_examples(test: doctest.DocTest) -> None:
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    report: list[str] = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
