"""The error a request earns by itself: the model answers it with INVALID_ARG, naming the problem,
and serves the other requests of its batch. Numpy- and torch-free: clients raise it too."""

from __future__ import annotations


class InvalidRequestError(ValueError):
    """The request itself is wrong (bad frame, bad tensor); the message names the problem."""
