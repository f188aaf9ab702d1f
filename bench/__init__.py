"""Benchmarks for docqa (run as modules, e.g. ``python -m bench.ingest``)."""
