"""Error types.

Every error a user can cause (bad file, bad key, bad value, model that does not import) is a
:class:`HwawareError`. Its message is one line that names the file/layer/key/value at fault and
what is allowed; the CLI prints exactly that line and exits with code 2.
"""

from __future__ import annotations


class HwawareError(ValueError):
    """A problem with user input. ``str(err)`` is a complete one-line message."""


class UnsupportedLayerError(HwawareError):
    """A layer the hardware model or a backend cannot handle (never scored silently wrong)."""
