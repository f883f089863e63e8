"""Benchmark scripts: they print numbers, they are not tests. Run as `python -m benchmarks.<name>`."""
