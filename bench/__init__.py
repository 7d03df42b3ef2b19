"""Benchmarks: ``demofab bench NAME``. Each compares side by side, in one run, against a
reference (a bare library loop, a peer tool, the hardware limit) and ends its output with
one JSON object on the last line."""

__all__: list[str] = []  # the benchmarks are run by name (bench.cli), not imported
