"""Benchmarks that print figures; run each as a module: `.venv/bin/python -m bench.engine`."""
