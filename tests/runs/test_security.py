"""Secure defaults: no debug pages, a generated secret key, CSP, login throttling, admin
actions behind their permissions, `serve` on loopback only."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from runs.models import ApiToken
from wfdash import settings as project_settings

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_it_runs_without_debug_by_default() -> None:
    assert project_settings.DEBUG is False


def test_it_generates_a_secret_key_once_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "data" / ".wfdash-secret-key"
    key = project_settings.generated_secret_key(path)
    assert len(key) >= 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert project_settings.generated_secret_key(path) == key  # kept, not regenerated
    assert project_settings.generated_secret_key(tmp_path / "other") != key


def test_it_shows_its_own_404_page_without_the_url_list(client: Client) -> None:
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    content = response.content.decode()
    assert "There is nothing at this address" in content
    assert "URLconf" not in content and "admin/" not in content


def test_it_answers_unknown_api_paths_with_json(client: Client) -> None:
    response = client.get("/api/nothing/here/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_it_sends_a_content_security_policy_without_inline_scripts(client: Client) -> None:
    policy = client.get("/accounts/login/").headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("style-src-attr")[0]
    assert "frame-ancestors 'none'" in policy


def test_it_locks_out_a_username_after_five_wrong_passwords(client: Client) -> None:
    get_user_model().objects.create_user("alice", password="right-password-123")
    for _ in range(4):
        response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
        assert response.status_code == 200  # the form again, with its error
    fifth = client.post("/accounts/login/", {"username": "alice", "password": "wrong"})
    assert fifth.status_code == 429
    locked = client.post("/accounts/login/", {"username": "alice", "password": "right-password-123"})
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_offers_token_revocation_only_to_staff_who_may_change_tokens(client: Client) -> None:
    owner = get_user_model().objects.create_user("owner", password="pw-owner-123")
    token, _ = ApiToken.issue(owner)
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apitoken"))
    client.force_login(viewer)
    page = client.get("/admin/runs/apitoken/")
    assert page.status_code == 200 and 'value="revoke"' not in page.content.decode()
    client.post("/admin/runs/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    token.refresh_from_db()
    assert token.revoked is False


def test_serve_refuses_an_address_other_machines_can_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALLOWED_HOSTS", raising=False)
    with pytest.raises(CommandError, match="set ALLOWED_HOSTS"):
        call_command("serve", "--host", "0.0.0.0")
