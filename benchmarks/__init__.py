"""Overhead benchmarks for retention-middleware (DESIGN.md section 8): ``python -m benchmarks``.

Every figure is measured side by side with its baseline in the same run, the two interleaved, and
reported as median and p99 with the difference and ratio. Nothing here asserts on time: the numbers
are for people to read; ``tests/test_benchmarks.py`` only keeps the harness working.
"""
