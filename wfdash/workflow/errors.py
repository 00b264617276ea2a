"""Exceptions raised by the workflow engine."""

from __future__ import annotations


class WorkflowError(Exception):
    """Base class of every engine error."""


class WorkflowValidationError(WorkflowError):
    """A workflow's steps or signatures are inconsistent."""


class WorkflowRuntimeError(WorkflowError):
    """A run failed: a step raised, returned a wrong value, or the run stalled."""

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        self.step = step


class WorkflowTimeoutError(WorkflowError):
    """A run exceeded its workflow's timeout."""


class WorkflowCancelledError(WorkflowError):
    """A run was cancelled through its handler."""


class SerializationError(WorkflowError):
    """A value or event cannot be encoded, or a stored payload cannot be decoded."""


class WorkflowSuspendedError(WorkflowError):
    """A run stopped at a checkpoint boundary (drain, or waiting for input); resume it later."""
