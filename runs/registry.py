"""Workflow names to classes: from settings.WFDASH_WORKFLOWS and the WFDASH_WORKFLOWS variable.

Stored rows name a workflow only by its registered name; classes are imported
from these configured paths, never from a path read out of the database.
"""

from __future__ import annotations

import os
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from wfdash.workflow import Workflow


class UnknownWorkflow(LookupError):
    def __init__(self, name: str) -> None:
        known = ", ".join(sorted(configured_paths())) or "none"
        super().__init__(f"unknown workflow {name!r} (registered: {known})")
        self.name = name


def parse_env(raw: str) -> dict[str, str]:
    """Parse `name=dotted.path.Class,name2=...`."""
    entries: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path or "." not in path:
            raise ImproperlyConfigured(
                f"WFDASH_WORKFLOWS entries must look like name=package.module.Class, got {item!r}"
            )
        entries[name] = path
    return entries


@cache
def configured_paths() -> dict[str, str]:
    paths = dict(getattr(settings, "WFDASH_WORKFLOWS", {}))
    paths.update(parse_env(os.environ.get("WFDASH_WORKFLOWS", "")))
    return paths


@cache
def workflow_class(name: str) -> type[Workflow]:
    paths = configured_paths()
    if name not in paths:
        raise UnknownWorkflow(name)
    cls = import_string(paths[name])
    if not (isinstance(cls, type) and issubclass(cls, Workflow)):
        raise ImproperlyConfigured(f"WFDASH_WORKFLOWS[{name!r}] = {paths[name]!r} is not a Workflow subclass")
    return cls


def get_workflow(name: str) -> Workflow:
    """A fresh instance of the workflow registered as `name`."""
    return workflow_class(name)()


def name_of(workflow: Workflow) -> str:
    cls = type(workflow)
    for name in configured_paths():
        try:
            if workflow_class(name) is cls:
                return name
        except ImportError:
            continue
    raise UnknownWorkflow(cls.__name__)


def names() -> list[str]:
    return sorted(configured_paths())


def clear_cache() -> None:
    configured_paths.cache_clear()
    workflow_class.cache_clear()
