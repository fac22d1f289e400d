"""Reproducible performance and quality benchmarks (``make bench``; see benchmarks/README.md)."""
