"""Benchmarks behind scripts/benchmark.py (`make bench`): every stage measured on this machine, no timed tests."""
