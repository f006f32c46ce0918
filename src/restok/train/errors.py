"""The one error of training: a run that cannot go on (bad data, NaN loss, mismatched resume state); its message says
why."""

from ..runtime.requests import RequestError

__all__ = ["TrainingError"]


class TrainingError(RequestError, RuntimeError):
    """A run that cannot go on (bad data, NaN loss, mismatched resume state); the message says why."""
