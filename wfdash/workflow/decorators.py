"""`@step`: marks workflow methods and reads their event types from annotations."""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import WorkflowValidationError
from .events import Event
from .retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class StepConfig:
    """What the engine needs to know about one step."""

    name: str
    accepted_events: tuple[type[Event], ...]
    return_types: tuple[type[Event], ...]
    event_param: str
    context_param: str | None
    num_workers: int = 1
    retry_policy: RetryPolicy | None = None
    # Extra parameters with defaults are allowed; they are never passed.
    extra_params: tuple[str, ...] = field(default=())


def step[F: Callable[..., Any]](
    func: F | None = None,
    *,
    num_workers: int = 1,
    retry_policy: RetryPolicy | None = None,
) -> Any:
    """Mark an async method as a step, bare (`@step`) or configured (`@step(num_workers=4)`)."""
    if not isinstance(num_workers, int) or num_workers < 1:
        raise WorkflowValidationError("num_workers must be a positive integer")
    # Annotations may name classes local to the function defining the workflow;
    # keep the defining frames' namespaces to resolve them.
    frame = sys._getframe(1)
    namespaces: list[dict[str, Any]] = []
    for _ in range(3):
        if frame is None:
            break
        namespaces.append(dict(frame.f_locals))
        frame = frame.f_back  # type: ignore[assignment]

    def decorate(fn: F) -> F:
        fn.__wf_step__ = _StepSpec(fn, num_workers, retry_policy, namespaces)  # type: ignore[attr-defined]
        return fn

    if func is not None:
        return decorate(func)
    return decorate


class _StepSpec:
    """Deferred introspection: resolved when a workflow class is validated."""

    def __init__(
        self,
        fn: Callable[..., Any],
        num_workers: int,
        retry_policy: RetryPolicy | None,
        namespaces: list[dict[str, Any]],
    ) -> None:
        self.fn = fn
        self.num_workers = num_workers
        self.retry_policy = retry_policy
        self.namespaces = namespaces
        self._config: StepConfig | None = None

    def config(self) -> StepConfig:
        if self._config is None:
            self._config = _introspect(self.fn, self.num_workers, self.retry_policy, self.namespaces)
        return self._config


def _event_types(annotation: Any, what: str, name: str, allow_none: bool) -> tuple[type[Event], ...]:
    if annotation is None or annotation is type(None):
        if allow_none:
            return ()
        raise WorkflowValidationError(f"step '{name}': {what} must be an Event type, not None")
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        found: list[type[Event]] = []
        for arg in typing.get_args(annotation):
            found.extend(_event_types(arg, what, name, allow_none))
        return tuple(dict.fromkeys(found))
    if isinstance(annotation, type) and issubclass(annotation, Event):
        return (annotation,)
    raise WorkflowValidationError(
        f"step '{name}': {what} must be an Event subclass or a union of them, got {annotation!r}"
    )


def _introspect(
    fn: Callable[..., Any],
    num_workers: int,
    retry_policy: RetryPolicy | None,
    namespaces: list[dict[str, Any]],
) -> StepConfig:
    from .context import Context  # circular at import time only

    name = fn.__name__
    if not inspect.iscoroutinefunction(fn):
        raise WorkflowValidationError(f"step '{name}' must be an async method (async def)")
    localns: dict[str, Any] = {}
    for ns in reversed(namespaces):
        localns.update(ns)
    localns.setdefault("Context", Context)
    try:
        hints = typing.get_type_hints(fn, localns=localns)
    except Exception as exc:
        raise WorkflowValidationError(f"step '{name}': cannot resolve annotations: {exc}") from exc
    params = list(inspect.signature(fn).parameters.values())[1:]  # drop self
    event_param: str | None = None
    context_param: str | None = None
    accepted: tuple[type[Event], ...] = ()
    extra: list[str] = []
    for p in params:
        ann = hints.get(p.name)
        if ann is Context or (isinstance(ann, type) and issubclass(ann, Context)):
            context_param = p.name
        elif event_param is None and ann is not None and p.default is inspect.Parameter.empty:
            accepted = _event_types(ann, f"parameter '{p.name}'", name, allow_none=False)
            event_param = p.name
        elif p.default is inspect.Parameter.empty:
            raise WorkflowValidationError(f"step '{name}': parameter '{p.name}' is neither the event nor a Context")
        else:
            extra.append(p.name)
    if event_param is None:
        raise WorkflowValidationError(f"step '{name}' must take an annotated event parameter")
    if "return" not in hints:
        raise WorkflowValidationError(f"step '{name}' must annotate its return type")
    returns = _event_types(hints["return"], "return annotation", name, allow_none=True)
    return StepConfig(
        name=name,
        accepted_events=accepted,
        return_types=returns,
        event_param=event_param,
        context_param=context_param,
        num_workers=num_workers,
        retry_policy=retry_policy,
        extra_params=tuple(extra),
    )
