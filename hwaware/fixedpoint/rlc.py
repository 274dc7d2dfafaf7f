"""The run-length codec moved to :mod:`hwaware.workload.rlc` (the profiler and the hardware model
use it); this name is kept so existing imports keep working."""

from ..workload.rlc import compressed_bytes, decode, encode, encoded_words, expected_words, rlc_ratio

__all__ = ["compressed_bytes", "decode", "encode", "encoded_words", "expected_words", "rlc_ratio"]
