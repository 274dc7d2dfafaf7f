"""Forward-hook profiler: run a real network on real inputs and record its workload.

    >>> wl = hwaware.profile(model, images)                  # a tensor = one batch
    >>> wl = hwaware.profile(model, loader, batches=8)       # a DataLoader, first 8 batches
    >>> wl.layers[0]                                         # Layer(name='conv1', N=..., ...)

One :class:`~hwaware.workload.Layer` per *call* of an ``nn.Conv1d``, ``nn.Conv2d`` or ``nn.Linear``
(a module called twice gives ``name`` and ``name#1``), in call order, with the fraction of exact
zeros in its input, weight and output averaged over all profiled batches (weighted by element
count). Operations that carry MACs but have no hardware model -- ``nn.Conv3d``, transposed
convolutions, dilated convolutions, ``nn.MultiheadAttention``, recurrent layers (RNN/LSTM/GRU and
their cells), and functional ``F.conv*``,
``F.linear``, ``matmul``/``@``/``mm``/``bmm``/``einsum``/``scaled_dot_product_attention``... called
outside those modules -- are listed in ``Workload.unmodeled`` with their MACs, never dropped.

MACs are per batch: a layer's ``N`` is the batch of the first profiled batch (for ``Linear`` on
``(B, T, C)`` input, ``N = B*T``), and unmodeled MACs are averaged over batches after scaling
each batch to that size, so ``wl.macs`` and ``wl.unmodeled_macs`` describe the same batch.

The model runs in eval mode under ``torch.no_grad()``; every module's ``training`` flag is
restored and every hook removed afterwards, also when the forward pass raises. Parameters and
buffers are never written (eval mode keeps BatchNorm running statistics fixed).

Layout: :mod:`.entry` (``profile``, ``profile_call``, input forms and errors), :mod:`.hooks` (the
``Profiler`` context manager), :mod:`.records` (module call -> ``Layer``), :mod:`.stats` (zeros and
RLC sizes measured per call), :mod:`.macs` (MAC formulas and the functional-op table).
"""

from .entry import describe_inputs, fit_error, profile, profile_call
from .hooks import NameFilter, Profiler
from .macs import COUNTED, COUNTED_FUNCTIONS, ESTIMATED, RECORDED

__all__ = ["profile", "profile_call", "Profiler", "fit_error", "describe_inputs", "NameFilter",
           "COUNTED", "COUNTED_FUNCTIONS", "ESTIMATED", "RECORDED"]
