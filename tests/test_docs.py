"""Every example in the docstrings and on the docs pages runs as written."""

import doctest
import importlib
import inspect
import pathlib
import pkgutil

import pytest

import advprune

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
MODULES = sorted(
    name for _, name, _ in pkgutil.walk_packages(advprune.__path__, "advprune.")
)


@pytest.mark.parametrize("name", ["advprune", *MODULES])
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=FLAGS)
    assert result.failed == 0


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.rst")))
def test_docs_page_examples_run(page):
    path = str(DOCS / page)
    result = doctest.testfile(path, module_relative=False, optionflags=FLAGS)
    assert result.failed == 0


def test_every_public_name_has_an_example():
    missing = []
    public_modules = [name for name in MODULES if "._" not in name]
    for name in ["advprune", *public_modules]:
        module = importlib.import_module(name)
        for public in getattr(module, "__all__", []):
            obj = getattr(module, public)
            is_documented = inspect.isfunction(obj) or inspect.isclass(obj)
            if is_documented and ">>>" not in (obj.__doc__ or ""):
                missing.append(f"{name}.{public}")
    assert missing == []
