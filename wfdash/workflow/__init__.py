"""wfdash's workflow engine: pure Python and pydantic, no Django."""

from __future__ import annotations

from .context import Context
from .decorators import step
from .errors import (
    SerializationError,
    WorkflowCancelledError,
    WorkflowError,
    WorkflowRuntimeError,
    WorkflowSuspendedError,
    WorkflowTimeoutError,
    WorkflowValidationError,
)
from .events import Event, HumanResponseEvent, InputRequiredEvent, StartEvent, StopEvent
from .handler import WorkflowHandler
from .retry import ConstantDelayRetryPolicy, RetryPolicy
from .streaming import StreamDelta, StreamWrite
from .workflow import Workflow

__all__ = [
    "ConstantDelayRetryPolicy",
    "Context",
    "Event",
    "HumanResponseEvent",
    "InputRequiredEvent",
    "RetryPolicy",
    "SerializationError",
    "StartEvent",
    "StopEvent",
    "StreamDelta",
    "StreamWrite",
    "Workflow",
    "WorkflowCancelledError",
    "WorkflowError",
    "WorkflowHandler",
    "WorkflowRuntimeError",
    "WorkflowSuspendedError",
    "WorkflowTimeoutError",
    "WorkflowValidationError",
    "step",
]
