"""Micro-benchmarks (``python -m wsol.bench.eval_bench``)."""
