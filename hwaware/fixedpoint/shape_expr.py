"""Sizes that a model reads from a tensor at run time (``b, c, h, w = x.size()`` then
``x.view(b, 2, c // 2, h, w)``, as torchvision's channel shuffle): kept as small expressions over
the integer graph's values and evaluated on the actual tensors each run, never frozen to the
calibration batch's sizes.

An expression is an ``int``, ``("size", j, d)`` (dim ``d`` of value ``j``) or
``(op, left, right)`` with ``op`` one of :data:`OPS`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch

from .._fx import module_path, target_name
from ..errors import UnsupportedLayerError

__all__ = ["OPS", "build", "evaluate", "expand", "refs"]

OPS: dict[str, Callable[[int, int], int]] = {
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "floordiv": operator.floordiv,
    "mod": operator.mod,
}
_FUNCS = {operator.add: "add", operator.sub: "sub", operator.mul: "mul", operator.floordiv: "floordiv",
          operator.mod: "mod"}


def _size_source(n: Any, ienv: dict) -> Any:
    """The value index behind ``x.size()`` / ``x.shape`` (a whole shape), else None."""
    if not isinstance(n, torch.fx.Node):
        return None
    if n.op == "call_method" and n.target == "size" and len(n.args) == 1 and not n.kwargs and n.args[0] in ienv:
        return ienv[n.args[0]]
    if n.op == "call_function" and n.target is getattr and n.args[1] == "shape" and n.args[0] in ienv:
        return ienv[n.args[0]]
    return None


def build(d: Any, ienv: dict, user: torch.fx.Node) -> Any:
    """The expression of size argument ``d`` of node ``user`` (a view/reshape)."""
    if isinstance(d, bool):
        pass
    elif isinstance(d, int):
        return d
    elif isinstance(d, torch.fx.Node):
        if d.op == "call_method" and d.target == "size" and len(d.args) == 2 and d.args[0] in ienv:
            return ("size", ienv[d.args[0]], int(d.args[1]))
        if d.op == "call_function" and d.target is operator.getitem:
            src, k = d.args
            j = _size_source(src, ienv)
            if j is not None and isinstance(k, int):
                return ("size", j, k)
        if d.op == "call_function" and d.target in _FUNCS and len(d.args) == 2 and not d.kwargs:
            return (_FUNCS[d.target], build(d.args[0], ienv, user), build(d.args[1], ienv, user))
    raise UnsupportedLayerError(
        f"convert: op '{target_name(user)}' in module '{module_path(user)}': a size argument must be an int, "
        f"a dim of an activation (x.size(i), x.shape[i], unpacked x.size()) or +, -, *, //, % of those; "
        f"got {_describe(d)}")


def expand(dims: tuple[Any, ...], ienv: dict, fenv: dict) -> tuple[Any, ...]:
    """``x.view(y.size())``: a whole shape given as one argument becomes its dims."""
    if len(dims) == 1 and isinstance(dims[0], torch.fx.Node):
        j = _size_source(dims[0], ienv)
        if j is not None:
            return tuple(("size", j, k) for k in range(len(fenv[dims[0]])))
    return dims


def _describe(d: Any) -> str:
    if isinstance(d, torch.fx.Node):
        return f"'{target_name(d)}' ({d.op})"
    return repr(d)


def evaluate(e: Any, shape_of: Callable[[int], tuple[int, ...]]) -> int:
    """The expression's value with ``shape_of(j)`` the shape of value ``j`` now."""
    if isinstance(e, int):
        return e
    if e[0] == "size":
        return int(shape_of(e[1])[e[2]])
    return OPS[e[0]](evaluate(e[1], shape_of), evaluate(e[2], shape_of))


def refs(e: Any) -> list[int]:
    """The value indices an expression reads."""
    if isinstance(e, int):
        return []
    if e[0] == "size":
        return [e[1]]
    return refs(e[1]) + refs(e[2])
