"""Errors of the accelerators package.

AcceleratorError                 base
├── UnsupportedModel             a backend cannot run this graph (names the op and node)
├── NumericMismatch              a backend's golden-input output differs from onnxruntime's
└── NoVerifiedAccelerator        `required: true` and no preferred accelerator passed verification
"""


class AcceleratorError(Exception):
    """Base of accelerator errors."""


class UnsupportedModel(AcceleratorError):
    """The backend cannot run this model; the message names the op (and node) it lacks."""


class NumericMismatch(AcceleratorError):
    """The candidate backend disagrees with the onnxruntime reference on the golden input."""


class NoVerifiedAccelerator(AcceleratorError):
    """No accelerator in the preference passed verification and fall-back to CPU is not allowed."""
