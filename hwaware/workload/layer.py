"""The workload record of one layer, in the letters of the Eyeriss paper (JSSC 2017, Table I).

N  batch size                      M  filters (all groups together)
C  channels per filter             H, W  input height/width (unpadded; see ``padding``)
R, S  filter height/width          E, F  output height/width (derived)
U  vertical stride, ``U_h`` horizontal stride (defaults to U)
groups: input channels = C * groups, filters per group = M / groups.

A fully connected layer is the special case H=W=R=S=E=F=1. A Conv1d is H=R=1 (the length runs
along W/S/F). ``padding`` defaults to 0, in which case H, W are the padded sizes as in the
paper's Table III.

Worked example (paper AlexNet CONV1 at batch 4): N=4, M=96, C=3, H=W=227, R=S=11, U=4 gives
E=F=55 and MACs = 4*96*3*55*55*11*11 = 421.6 M per frame-batch of 4 -> 105.4 M per frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from .._checks import check_dim
from ..errors import HwawareError

KINDS = ("conv", "fc", "depthwise")


@dataclass(frozen=True)
class Layer:
    """Shape and measured statistics of one Conv/Linear call.

    The zero fractions are in [0, 1]; ``ifmap_zeros`` is the fraction of zeros in the layer's
    input activations (measured on real data by :func:`hwaware.profile`), ``weight_zeros`` in its
    weights (e.g. after pruning) and ``ofmap_zeros`` in its outputs *before* any following
    non-linearity (the value the layer's hook observes).

    ``ofmap_relu_zeros`` and ``ofmap_rlc`` describe the ofmap as an accelerator with a ReLU unit on
    its output writes it: after the ReLU that follows the layer (directly or after a BatchNorm,
    which inference hardware folds into the layer), before any pooling (Eyeriss has no pooling
    unit: JSSC 2017 Sec. III). ``None`` / ``0.0`` = not measured (no ReLU followed the layer, or an
    older workload file): the hardware model then codes the ofmap at the zeros the next layer reads.
    """

    name: str
    N: int
    M: int
    C: int
    H: int
    W: int
    R: int
    S: int
    U: int = 1
    U_h: int = 0  # horizontal stride; 0 means "same as U"
    padding: int = 0
    padding_w: int = -1  # horizontal padding; -1 means "same as padding"
    groups: int = 1
    kind: str = ""  # derived when empty: conv, fc or depthwise
    ifmap_zeros: float = 0.0
    weight_zeros: float = 0.0
    ofmap_zeros: float = 0.0
    weight_bits: int = 16
    act_bits: int = 16
    op: str = ""  # the torch op that produced the record (Conv2d, Linear, ...), informational
    # RLC-coded size / raw size of the (padded) input fmap, measured with the chip's codec on real
    # activations by the profiler; 0 = not measured (the model then uses ifmap_zeros)
    ifmap_rlc: float = 0.0
    # zeros of the ofmap after the ReLU fused into the layer, before pooling; None = not measured
    ofmap_relu_zeros: float | None = None
    # RLC-coded size / raw size of that ofmap (NCHW stream, no padding); 0 = not measured
    ofmap_rlc: float = 0.0

    SHAPE_KEYS: ClassVar[tuple[str, ...]] = ("N", "M", "C", "H", "W", "R", "S")

    def __post_init__(self) -> None:
        where = f"layer '{self.name}'"
        for k in self.SHAPE_KEYS + ("U", "groups", "weight_bits", "act_bits"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int):
                raise HwawareError(f"{where}: '{k}' must be an integer, got {v!r}")
            if v <= 0:
                raise HwawareError(f"{where}: '{k}' must be positive, got {v}")
            if k in self.SHAPE_KEYS:
                check_dim(v, k, where)
        if self.U_h == 0:
            object.__setattr__(self, "U_h", self.U)
        if self.padding_w == -1:
            object.__setattr__(self, "padding_w", self.padding)
        if self.U_h < 0 or self.padding < 0 or self.padding_w < 0:
            raise HwawareError(f"{where}: strides must be positive and padding non-negative")
        if self.M % self.groups:
            raise HwawareError(f"{where}: M={self.M} filters is not divisible by groups={self.groups}")
        for k in ("ifmap_zeros", "weight_zeros", "ofmap_zeros"):
            v = float(getattr(self, k))
            if not 0.0 <= v <= 1.0:
                raise HwawareError(f"{where}: '{k}' is a fraction in [0, 1], got {v}")
            object.__setattr__(self, k, v)
        if self.ofmap_relu_zeros is not None:
            v = float(self.ofmap_relu_zeros)
            if not 0.0 <= v <= 1.0:
                raise HwawareError(f"{where}: 'ofmap_relu_zeros' is a fraction in [0, 1], got {v}")
            object.__setattr__(self, "ofmap_relu_zeros", v)
        for k in ("ifmap_rlc", "ofmap_rlc"):
            v = float(getattr(self, k))
            if not 0.0 <= v <= 2.0:
                raise HwawareError(f"{where}: '{k}' is a size ratio in [0, 2], got {v}")
            object.__setattr__(self, k, v)
        for k in ("weight_bits", "act_bits"):
            if not 1 <= getattr(self, k) <= 32:
                raise HwawareError(f"{where}: '{k}' must be within 1..32, got {getattr(self, k)}")
        if self.H + 2 * self.padding < self.R or self.W + 2 * self.padding_w < self.S:
            raise HwawareError(
                f"{where}: filter {self.R}x{self.S} does not fit the padded input "
                f"{self.H + 2 * self.padding}x{self.W + 2 * self.padding_w}"
            )
        if not self.kind:
            object.__setattr__(self, "kind", self._derive_kind())
        elif self.kind not in KINDS:
            raise HwawareError(f"{where}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def _derive_kind(self) -> str:
        if self.H == self.W == self.R == self.S == 1 and self.groups == 1:
            return "fc"
        if self.groups > 1 and self.C == 1 and self.groups == self.M:
            return "depthwise"
        return "conv"

    # --- derived shape -----------------------------------------------------------------------
    @property
    def Hp(self) -> int:
        """Padded input height (what the hardware streams)."""
        return self.H + 2 * self.padding

    @property
    def Wp(self) -> int:
        return self.W + 2 * self.padding_w

    @property
    def E(self) -> int:
        return (self.Hp - self.R) // self.U + 1

    @property
    def F(self) -> int:
        return (self.Wp - self.S) // self.U_h + 1

    @property
    def in_channels(self) -> int:
        return self.C * self.groups

    @property
    def macs(self) -> int:
        """N*M*C*E*F*R*S multiply-accumulates (dense, zeros included)."""
        return self.N * self.M * self.C * self.E * self.F * self.R * self.S

    @property
    def weights(self) -> int:
        """M*C*R*S weights (bias excluded)."""
        return self.M * self.C * self.R * self.S

    @property
    def ifmap_size(self) -> int:
        """Values of the unpadded input activations: N*C*groups*H*W."""
        return self.N * self.in_channels * self.H * self.W

    @property
    def ofmap_size(self) -> int:
        return self.N * self.M * self.E * self.F

    @property
    def nonzero_macs(self) -> float:
        """MACs whose ifmap and weight operands are both non-zero, assuming independence."""
        return self.macs * (1.0 - self.ifmap_zeros) * (1.0 - self.weight_zeros)

    def shape_key(self) -> tuple[int, ...]:
        """Everything that determines the mapping (statistics excluded): the mapper's cache key."""
        return (self.N, self.M, self.C, self.H, self.W, self.R, self.S, self.U, self.U_h,
                self.padding, self.padding_w, self.groups)

    def replace(self, **changes: Any) -> Layer:
        return dataclasses.replace(self, **changes)

    # --- (de)serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The workload-file form, plus the derived ``E``, ``F``, ``macs`` and ``weights``."""
        d: dict[str, Any] = {"name": self.name, "kind": self.kind}
        for k in self.SHAPE_KEYS:
            d[k] = getattr(self, k)
        d["U"] = self.U if self.U == self.U_h else [self.U, self.U_h]
        d["padding"] = self.padding if self.padding == self.padding_w else [self.padding, self.padding_w]
        d["groups"] = self.groups
        d["E"], d["F"] = self.E, self.F
        d["ifmap_zeros"] = round(self.ifmap_zeros, 6)
        d["weight_zeros"] = round(self.weight_zeros, 6)
        d["ofmap_zeros"] = round(self.ofmap_zeros, 6)
        d["weight_bits"], d["act_bits"] = self.weight_bits, self.act_bits
        if self.op:
            d["op"] = self.op
        if self.ifmap_rlc:
            d["ifmap_rlc"] = round(self.ifmap_rlc, 6)
        if self.ofmap_relu_zeros is not None:
            d["ofmap_relu_zeros"] = round(self.ofmap_relu_zeros, 6)
        if self.ofmap_rlc:
            d["ofmap_rlc"] = round(self.ofmap_rlc, 6)
        d["macs"], d["weights"] = self.macs, self.weights
        return d

    REQUIRED_KEYS: ClassVar[tuple[str, ...]] = ("name", "N", "M", "C", "H", "W", "R", "S")
    OPTIONAL_KEYS: ClassVar[tuple[str, ...]] = (
        "U", "groups", "padding", "ifmap_zeros", "weight_zeros", "ofmap_zeros", "kind",
        "weight_bits", "act_bits", "op", "ifmap_rlc", "ofmap_relu_zeros", "ofmap_rlc",
    )
    # Keys written by to_dict() that are derived; accepted on read and checked for consistency.
    DERIVED_KEYS: ClassVar[tuple[str, ...]] = ("E", "F", "macs", "weights")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "workload") -> Layer:
        """Build a record from a workload-file entry; unknown or missing keys are errors."""
        if not isinstance(d, dict):
            raise HwawareError(f"{where}: each layer must be a mapping of keys, got {type(d).__name__}")
        name = d.get("name", "?")
        loc = f"{where}: layer '{name}'"
        allowed = set(cls.REQUIRED_KEYS) | set(cls.OPTIONAL_KEYS) | set(cls.DERIVED_KEYS)
        unknown = sorted(set(d) - allowed)
        if unknown:
            from .._suggest import did_you_mean

            raise HwawareError(
                f"{loc}: unknown key '{unknown[0]}'{did_you_mean(unknown[0], allowed)}; "
                f"allowed keys: {', '.join(cls.REQUIRED_KEYS + cls.OPTIONAL_KEYS)}"
            )
        missing = [k for k in cls.REQUIRED_KEYS if k not in d]
        if missing:
            raise HwawareError(f"{loc}: missing key '{missing[0]}' (required: {', '.join(cls.REQUIRED_KEYS)})")
        kw: dict[str, Any] = {"name": str(d["name"])}
        for k in cls.SHAPE_KEYS + ("groups", "weight_bits", "act_bits"):
            if k in d:
                kw[k] = _int(d[k], k, loc)
        if "U" in d:
            kw["U"], kw["U_h"] = _pair_int(d["U"], "U", loc)
        if "padding" in d:
            kw["padding"], kw["padding_w"] = _pair_int(d["padding"], "padding", loc)
        for k in ("ifmap_zeros", "weight_zeros", "ofmap_zeros", "ifmap_rlc", "ofmap_relu_zeros", "ofmap_rlc"):
            if k in d:
                try:
                    kw[k] = float(d[k])
                except (TypeError, ValueError):
                    raise HwawareError(f"{loc}: '{k}' must be a number in [0, 1], got {d[k]!r}") from None
        for k in ("kind", "op"):
            if k in d:
                kw[k] = str(d[k])
        try:
            layer = cls(**kw)
        except HwawareError as exc:
            raise HwawareError(f"{where}: {exc}") from None
        for k in cls.DERIVED_KEYS:
            if k in d and _int(d[k], k, loc) != getattr(layer, k):
                raise HwawareError(
                    f"{loc}: '{k}' is {d[k]} but the shape gives {getattr(layer, k)}; "
                    f"remove it or fix the shape"
                )
        return layer


def _int(v: Any, key: str, loc: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise HwawareError(f"{loc}: '{key}' must be an integer, got {v!r}")
    return int(v)


def _pair_int(v: Any, key: str, loc: str) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            raise HwawareError(f"{loc}: '{key}' must be an int or a pair [vertical, horizontal], got {v!r}")
        return (_int(v[0], key, loc), _int(v[1], key, loc))
    x = _int(v, key, loc)
    return (x, x)

