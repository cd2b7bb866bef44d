"""Benchmarks of the Any2Point zoo: `python -m benchmarks <command>` (see benchmarks/__main__.py).

The training suite and its tables, speed and cost measurements, and `render`, which regenerates every generated
block of README.md, docs/ and the model cards from the run records in benchmarks/results/.
"""
