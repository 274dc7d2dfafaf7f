"""Compression loops driven by the hardware score.

- :mod:`hwaware.compress.surgery` — structured channel surgery (remove whole filters/channels and
  return a smaller dense model); shared by structured pruning and NetAdapt.
- :mod:`hwaware.compress.magnitude` — magnitude pruning (Han et al. 2015), the baseline.
- :mod:`hwaware.compress.energy_aware` — energy-aware pruning (Yang, Chen, Sze, CVPR 2017).
"""
