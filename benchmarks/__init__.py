"""Benchmarks of advprune; each module prints its command in its docstring."""
