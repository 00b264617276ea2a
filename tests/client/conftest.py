"""The client against a live daphne on a free port and a real worker (tests/browser's fixtures),
over real HTTP and WebSockets, with a real API token."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission, User

from runs.models import ApiToken
from tests.browser import conftest as browser
from tests.client.proxy import CuttableProxy
from wfdash.client import AsyncClient, Client

# daphne on a free port against the test database (one per module) and a worker process.
daphne, server_env, server, worker = browser.daphne, browser.server_env, browser.server, browser.worker


def _user(name: str, *codenames: str) -> User:
    user = User.objects.create_user(name, password=f"pw-{name}-12345")
    perms = Permission.objects.filter(content_type__app_label="runs", codename__in=codenames)
    user.user_permissions.add(*perms)
    return user


@pytest.fixture
def token(transactional_db: None) -> str:
    """A token of a user who may view, start, fork, cancel and answer runs."""
    return ApiToken.issue(_user("owner", "view_run", "add_run", "change_run"), "tests")[1]


@pytest.fixture
def viewer_token(transactional_db: None) -> str:
    """A token of a user who may only look (runs.view_run)."""
    return ApiToken.issue(_user("viewer", "view_run"), "tests")[1]


@pytest.fixture
def outsider_token(transactional_db: None) -> str:
    """A token of a user without any runs permission."""
    return ApiToken.issue(_user("outsider"), "tests")[1]


@pytest.fixture
def client(server: str, token: str) -> Iterator[Client]:
    """A client of the owner's; tests whose runs must execute also ask for `worker`."""
    with Client(server, token) as c:
        yield c


@pytest.fixture
async def aclient(server: str, token: str) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(server, token) as c:
        yield c


@pytest.fixture
def proxy(server: str) -> Iterator[CuttableProxy]:
    """A proxy in front of daphne whose connections the test cuts."""
    parts = urlsplit(server)
    p = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 80))
    yield p
    p.close()
