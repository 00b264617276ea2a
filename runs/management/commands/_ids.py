"""Shared by the commands: ids typed by prefix, and output that may go to a closed pipe."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import CommandError
from django.db.models import QuerySet

from runs import filters


def resolve(qs: QuerySet[Any], value: str, what: str, noun: str) -> uuid.UUID:
    """The id of the one row of `qs` that `value` (a whole id or its first 6+ hex digits) names."""
    try:
        return filters.resolve_id(qs, value, what, noun)
    except filters.FilterError as exc:
        message = str(exc)
        if " matches " not in message:  # malformed or matching nothing: say so first
            message = f"unknown {noun} {value[:60]!r}: {message}"
        raise CommandError(one_line(message)) from None


def one_line(text: str) -> str:
    """An error message on one line, as every command prints them."""
    return " ".join(str(text).split())


@contextmanager
def quiet_broken_pipe() -> Iterator[None]:
    """`manage.py checkpoints | head` ends when head has read enough: stop without a traceback.

    Python would also complain when it flushes stdout at exit, so stdout is pointed at
    /dev/null first (as the Python docs on SIGPIPE advise).
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # not a real file (captured by a test runner)
            pass
        raise SystemExit(0) from None
