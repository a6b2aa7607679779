"""Benchmarks: what hand-writing an op costs or saves, measured against PyTorch's own.

- ``python -m benchmarks.ops``: every op of ``nnbasics.functional`` against its
  ``torch.nn.functional`` twin (time, memory saved for backward, throughput).
- ``benchmarks.common``: the measuring instruments they share (alternating A/B
  timer, saved-tensor and peak-memory probes, device peaks, run header).

Results are committed under ``benchmarks/results/``, one set of files per device and dtype.
"""
