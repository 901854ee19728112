"""The errors of specs.signing (the tree is drawn in the package docstring)."""

from __future__ import annotations


class SignatureError(ValueError):
    """A signature cannot be made or checked."""


class UnsupportedAlgorithmError(SignatureError):
    """The algorithm is not allowed, or allowed but not available in this build."""


class BadSignatureError(SignatureError):
    """The signature does not verify."""
