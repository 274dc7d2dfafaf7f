"""How far an activation may reach on unseen inputs: the range its format must cover.

With the default ``wrap`` overflow one value beyond a format's range becomes a wrong-signed one,
so a format must cover what unseen inputs produce, not only what the calibration images did; and
every bit of margin halves the precision of the whole tensor. ``headroom_bits=0.5`` (the default
rule) covers 1.41x the calibration maximum for every tensor alike. ``headroom_bits="auto"`` sizes
each tensor's margin from its own calibration data instead, by a peaks-over-threshold fit
(extreme value theory: Pickands, Ann. Statist. 1975; Coles, "An Introduction to Statistical
Modeling of Extreme Values", 2001, ch. 4):

- ``m_1 >= m_2 >= ... >= m_N``: the per-image maxima of ``|value|`` over the N calibration images;
- the ``k`` largest (``k = clamp(N // 8, 4, 32)``) exceed the threshold ``u = m_(k+1)`` by excesses
  taken as exponential with mean ``sigma = mean(m_1..m_k) - u`` (the Gumbel domain, where maxima
  of sums of many products fall), so ``P(an image's max > u + y) = (k / N) * exp(-y / sigma)``;
- the range is the level one image in ``1 / p`` exceeds, ``u + sigma * ln(k / (N p))``, at least
  the calibration maximum and at most twice it (one bit); ``p = 1e-4`` per tensor by default.

A tensor whose per-image maxima are all alike (a bounded activation, a late feature map after
BatchNorm) gets little margin and keeps its precision; one with a long tail gets up to a bit.
Fewer than 16 calibration images are too few for a fit: the range is then the maximum times
``2**0.5``, the default rule.
"""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["TAIL_P", "per_image_max", "tail_range"]

TAIL_P = 1e-4  # per-tensor probability that an unseen image exceeds the range
MIN_IMAGES = 16


def per_image_max(t: torch.Tensor) -> np.ndarray:
    """``max |t[i]|`` for every image ``i`` of a batch (dim 0)."""
    if t.dim() == 0 or t.numel() == 0:
        return np.zeros(1)
    return t.detach().abs().reshape(t.shape[0], -1).amax(1).double().numpy()


def tail_range(maxima: np.ndarray, *, p: float = TAIL_P) -> float:
    """The range a format must cover so that an unseen image exceeds it with probability ``p``
    (see the module docstring); between ``max(maxima)`` and twice it."""
    m = np.sort(np.asarray(maxima, dtype=np.float64).ravel())[::-1]
    top = float(m[0]) if m.size else 0.0
    if top <= 0.0:
        return 0.0
    if not 0.0 < p < 1.0:
        raise ValueError(f"tail_range: p must be within (0, 1), got {p}")
    n = m.size
    if n < MIN_IMAGES:
        return top * 2.0 ** 0.5
    k = min(32, max(4, n // 8))
    u = float(m[k])
    sigma = float(m[:k].mean()) - u
    q = u + sigma * math.log(k / (n * p)) if sigma > 0 else top
    return min(2.0 * top, max(top, q))
