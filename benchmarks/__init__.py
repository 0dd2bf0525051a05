"""Benchmarks of advprune: each module runs from the repository root as
``python -m benchmarks.<name>`` and writes its JSON under ``benchmarks/results/``.

Every figure in ``docs/`` comes from one of these scripts; the command that
produced it stands next to it.
"""
