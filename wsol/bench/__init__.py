"""Benchmarks: ``python -m wsol.bench`` (``make bench``) runs every figure in its own
process and writes ``results/bench.md``; see `wsol.bench.runner`.
``python -m wsol.bench.eval_bench`` runs the evaluation engine's figure alone."""
