"""Sphinx configuration of the advprune documentation."""

import advprune

project = "advprune"
author = "the advprune developers"
copyright = "2026, the advprune developers"  # noqa: A001
version = release = advprune.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "numpydoc",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
exclude_patterns = ["_build"]
templates_path = ["_templates"]
html_theme = "alabaster"
intersphinx_mapping = {}
