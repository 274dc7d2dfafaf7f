"""torch.fx tracing and op tables shared by channel surgery and the fixed-point converter.

One place decides how a model is traced and which ops count as what:

- :func:`trace` traces with every module in eval mode and no grad, so a forward that updates state
  while tracing (timm's ``BatchNormAct2d`` bumps ``num_batches_tracked`` in train mode) cannot
  touch the user's model; training flags are restored afterwards.
- :class:`Tracer` keeps norm layers and their subclasses (``BatchNormAct2d``, ``LayerNorm2d``,
  ``FrozenBatchNorm2d``-style classes), stochastic-depth modules and timm's same-padding convs
  as leaves: their code is replaced by what they mean (a per-channel op, identity in eval, a
  padded convolution) instead of a bare ``F.batch_norm`` / ``permute`` nobody can follow.
- :func:`run_eval` runs a callable in eval mode with no grad and restores every module's flag.

The op tables name ops by meaning (elementwise, reduce, reshape, ...); surgery and the converter
read the same tables.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .errors import HwawareError

__all__ = [
    "Tracer", "eval_mode", "is_norm_module", "is_plain_linear", "is_same_pad_conv",
    "is_stochastic_depth", "module_path", "module_type", "run_eval", "shape_of", "target_name", "trace",
]

# --- leaves -----------------------------------------------------------------------------------

_NORM_BASES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
    nn.GroupNorm,
)
#: class names of modules that are identity in eval mode and scale whole samples in training
_STOCHASTIC_DEPTH_NAMES = frozenset({"DropPath", "StochasticDepth", "DropBlock2d"})
#: class names of convolutions that pad in forward to TF "SAME" (timm's tf_* models)
_SAME_PAD_CONV_NAMES = frozenset({"Conv2dSame", "Conv2dSameExport"})


def is_norm_module(m: nn.Module) -> bool:
    """A norm layer or a subclass (timm ``BatchNormAct2d``, ``LayerNorm2d``): a leaf when tracing."""
    return isinstance(m, _NORM_BASES)


def is_stochastic_depth(m: nn.Module) -> bool:
    """timm ``DropPath`` / torchvision ``StochasticDepth``: identity in eval mode."""
    return type(m).__name__ in _STOCHASTIC_DEPTH_NAMES


def is_plain_linear(m: nn.Module) -> bool:
    """nn.Linear or a subclass that only re-declares it (timm ``layers.Linear``, same forward)."""
    return isinstance(m, nn.Linear) and type(m).__name__ == "Linear"


def is_same_pad_conv(m: nn.Module) -> bool:
    """A Conv2d subclass that pads its input in forward to TF "SAME" (timm ``Conv2dSame``)."""
    return isinstance(m, nn.Conv2d) and type(m).__name__ in _SAME_PAD_CONV_NAMES


class Tracer(fx.Tracer):
    """fx tracer with the leaves above; remembers which module was being traced when tracing failed."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.failed: list[str] | None = None

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if is_norm_module(m) or is_stochastic_depth(m) or is_same_pad_conv(m) or is_plain_linear(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        name = self.path_of_module(m)
        self.stack.append(f"{name} ({type(m).__name__})")
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed is None:
                self.failed = list(self.stack)
            raise
        finally:
            self.stack.pop()


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode and no grad inside; every module's own flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, t in flags:
            m.training = t


def run_eval(model: nn.Module, fn: Any) -> Any:
    """Call ``fn()`` with every module of ``model`` in eval mode and no grad; restore flags after."""
    with eval_mode(model):
        return fn()


def trace(model: nn.Module, *, who: str) -> fx.GraphModule:
    """Trace ``model`` (eval mode, no grad, model untouched); ``who`` starts the error message."""
    tracer = Tracer()
    try:
        with eval_mode(model):
            graph = tracer.trace(model)
    except Exception as exc:
        where = tracer.failed[-1] if tracer.failed else f"top-level forward of {type(model).__name__}"
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise HwawareError(
            f"{who} cannot trace the model with torch.fx: module '{where}' failed: {msg} "
            "(a forward without data-dependent control flow is needed)"
        ) from exc
    return fx.GraphModule(tracer.root, graph)


def shape_of(x: Any) -> Any:
    """A tensor's shape, a list of shapes for a tuple/list holding tensors, else None."""
    if isinstance(x, torch.Tensor):
        return tuple(x.shape)
    if isinstance(x, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in x):
        return [shape_of(v) for v in x]
    return None


def target_name(node: fx.Node) -> str:
    t = node.target
    return t if isinstance(t, str) else getattr(t, "__name__", repr(t))


def _owner(node: fx.Node) -> tuple[Any, Any]:
    """(path, class) of the innermost module whose forward a traced node ran in; (None, None) at
    the top level. Older torch records the path alone."""
    stack = node.meta.get("nn_module_stack") if hasattr(node, "meta") else None
    if not stack:
        return None, None
    entry = list(stack.values())[-1]
    return entry if isinstance(entry, tuple) else (entry, None)


def module_path(node: fx.Node) -> str:
    """The module path an fx node came from (``layer1.0.conv1``; a function inside a module's
    forward carries that module's path), for error messages."""
    if node.op == "call_module":
        return str(node.target)
    path = _owner(node)[0]
    return str(path) if path else "(top level)"


def module_type(node: fx.Node) -> type | None:
    """The class of the module whose forward a traced function call ran in (timm's
    ``ScaledStdConv2d`` for its ``F.conv2d``); None at the top level or where torch does not say."""
    cls = _owner(node)[1]
    return cls if isinstance(cls, type) else None


# --- op tables --------------------------------------------------------------------------------

#: elementwise activations: output channel c depends on input channel c only
ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Threshold,
)
DROPOUT_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
)
POOL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool2d,
)
RESIZE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
    nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
)
ACTIVATION_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus, F.sigmoid, F.tanh, F.threshold,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp, torch.clip, torch.abs,
    torch.neg, operator.neg, torch.exp,
}
ACTIVATION_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "clip_",
    "abs", "neg", "exp",
}
COPY_METHODS = {"contiguous", "clone", "detach", "float", "half", "double", "to"}
DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout}
POOL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d,
}
RESIZE_FUNCTIONS = {F.interpolate, F.pad}
REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}
REDUCE_METHODS = {"mean", "sum", "amax", "amin"}
RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
ADD_METHODS = {"add", "add_", "__add__", "__iadd__"}
MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
MUL_METHODS = {"mul", "mul_", "__mul__", "__imul__"}
BINARY_FUNCTIONS = {
    *ADD_FUNCTIONS, *MUL_FUNCTIONS, operator.sub, operator.isub, operator.truediv,
    operator.itruediv, torch.sub, torch.div, torch.maximum, torch.minimum,
}
BINARY_METHODS = {*ADD_METHODS, *MUL_METHODS, "sub", "sub_", "div", "div_"}
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
SPLIT_FUNCTIONS = {torch.split, torch.chunk, torch.tensor_split}
SPLIT_METHODS = {"split", "chunk", "tensor_split"}
PERMUTE_FUNCTIONS = {torch.permute}
PERMUTE_METHODS = {"permute"}
META_METHODS = {"size", "dim", "numel"}


def _stochastic_depth_functions() -> set[Any]:
    try:  # torchvision is a runtime dependency; its functional stochastic depth is identity in eval
        from torchvision.ops import stochastic_depth
    except ImportError:  # pragma: no cover
        return set()
    return {stochastic_depth}


STOCHASTIC_DEPTH_FUNCTIONS = _stochastic_depth_functions()
