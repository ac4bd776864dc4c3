"""Experiments built on the pipeline: the demo, the benches (paper, cross-family, perf) and their reports."""
