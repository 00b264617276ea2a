"""The one access policy: who may read, start and change runs, on every surface.

Pages, the JSON API, WebSockets and admin actions all ask here:

- `runs.view_run`   read runs, checkpoints and their live streams;
- `runs.add_run`    start runs and fork checkpoints (one or many);
- `runs.change_run` cancel runs and answer their questions;
- `runs.view/add/change/delete_webhookendpoint` see, add, change (rotate, retry) and
  delete webhooks; the view permission also shows their deliveries, on run pages too.
  Every webhook action also needs `runs.view_run`: deliveries carry runs' results and
  errors, and an endpoint receives every run's. An endpoint's full URL (often holding
  a credential) is shown only with the change permission; others see `scheme://host/…`.

Anonymous users are refused first (pages redirect to the login, the API answers 401,
a socket closes with 4401); signed-in users without the permission get 403 (4403).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse


class Action(Enum):
    """What a user wants to do, and the permissions it takes (all of them)."""

    VIEW = (("runs.view_run",), "see runs")
    ADD = (("runs.add_run",), "start or fork runs")
    CHANGE = (("runs.change_run",), "cancel runs or answer their questions")
    # Webhooks: their endpoints' permissions cover their deliveries too; seeing runs is
    # needed as well, since deliveries (and so endpoints) carry runs' results and errors.
    WEBHOOK_VIEW = (("runs.view_webhookendpoint", "runs.view_run"), "see webhooks and their deliveries")
    WEBHOOK_ADD = (("runs.add_webhookendpoint", "runs.view_run"), "add webhooks")
    WEBHOOK_CHANGE = (
        ("runs.change_webhookendpoint", "runs.view_run"),
        "change webhooks, see their full URLs, rotate their secrets or retry deliveries",
    )
    WEBHOOK_DELETE = (("runs.delete_webhookendpoint", "runs.view_run"), "delete webhooks")

    def __init__(self, permissions: tuple[str, ...], verb: str) -> None:
        self.permissions = permissions
        self.verb = verb


VIEW, ADD, CHANGE = Action.VIEW, Action.ADD, Action.CHANGE
WEBHOOK_VIEW, WEBHOOK_ADD = Action.WEBHOOK_VIEW, Action.WEBHOOK_ADD
WEBHOOK_CHANGE, WEBHOOK_DELETE = Action.WEBHOOK_CHANGE, Action.WEBHOOK_DELETE

# WebSocket close codes, the HTTP statuses' counterparts.
UNAUTHENTICATED = 4401
FORBIDDEN = 4403


def allows(user: Any, action: Action) -> bool:
    """Whether `user` (possibly anonymous or None) may do `action`."""
    return bool(user is not None and user.is_authenticated and user.is_active and user.has_perms(action.permissions))


def refusal(action: Action, user: Any = None) -> str:
    """Why `user` may not do `action`: the permissions it lacks (all of them without a user)."""
    missing = [p for p in action.permissions if user is None or not user.has_perm(p)] or list(action.permissions)
    noun = "permission" if len(missing) == 1 else "permissions"
    return f"Your account may not {action.verb}: it needs the {' and '.join(missing)} {noun}."


def check(user: Any, action: Action) -> None:
    """Raise PermissionDenied (403, with why) unless `user` may do `action`."""
    if not allows(user, action):
        raise PermissionDenied(refusal(action, user))


def socket_close_code(user: Any, action: Action = VIEW) -> int | None:
    """The code to close a socket with, or None when `user` may subscribe."""
    if user is None or not user.is_authenticated:
        return UNAUTHENTICATED
    if not allows(user, action):
        return FORBIDDEN
    return None


def requires(action: Action) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A view decorator: anonymous users go to the login page, others without the
    permission get the 403 page saying which permission is missing."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            check(request.user, action)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
