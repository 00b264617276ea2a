"""Webhooks: the API (secret once, validation, address refusals, permissions, rotate),
transitions recorded with the status change, dispatch filters, the admin and the run page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import transaction
from django.test import Client
from django.utils import timezone

from runs import webhooks
from runs.models import ApiToken, Run, RunStatus, RunTransition, WebhookDelivery, WebhookEndpoint, start_run

pytestmark = pytest.mark.django_db

ALL = ["succeeded", "failed", "cancelled", "waiting"]


def _user(name: str, *perms: str) -> Any:
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-123")
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="runs", codename__in=perms))
    return user


def _client(user: Any) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user)[1]}")


def _post(client: Client, url: str, body: Any) -> Any:
    return client.post(url, body if isinstance(body, str) else json.dumps(body), content_type="application/json")


@pytest.fixture
def private_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WFDASH_WEBHOOK_ALLOW_PRIVATE", "1")


@pytest.fixture
def admin_api() -> Client:
    perms = ["view_webhookendpoint", "add_webhookendpoint", "change_webhookendpoint", "delete_webhookendpoint"]
    return _client(_user("hooker", "view_run", *perms))


def _create(client: Client, **body: Any) -> Any:
    return _post(client, "/api/webhooks/", {"url": "http://127.0.0.1:9/hook", "events": ALL, **body})


# -- the API ---------------------------------------------------------------------------


def test_create_shows_the_secret_once_and_nothing_else_does(admin_api: Client, private_ok: None) -> None:
    r = _create(admin_api, workflow="chain", events=["failed", "succeeded"])
    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) >= {"id", "url", "workflow", "events", "secret", "created_at"}
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", body["secret"])
    assert body["workflow"] == "chain" and body["events"] == ["succeeded", "failed"]
    listed = admin_api.get("/api/webhooks/")
    detail = admin_api.get(f"/api/webhooks/{body['id']}/")
    assert listed.status_code == detail.status_code == 200
    assert [w["id"] for w in listed.json()["items"]] == [body["id"]]
    assert detail.json()["deliveries"] == []
    for page in (listed, detail):
        assert body["secret"] not in page.content.decode() and '"secret"' not in page.content.decode()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://example.com/x"}, "url"),
        ({"url": "http://user@example.com/x"}, "url"),
        ({"url": "http://user:pw@example.com/x"}, "url"),
        ({"url": "http:///x"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://127.0.0.1:99999/"}, "url"),
        ({"url": 5}, "url"),
        ({"workflow": "nope"}, "workflow"),
        ({"events": ["exploded"]}, "events"),
        ({"events": []}, "events"),
        ({"events": "succeeded"}, "events"),
    ],
)
def test_bad_fields_are_422_naming_the_field_and_create_nothing(
    admin_api: Client, private_ok: None, body: dict[str, Any], field: str
) -> None:
    r = _create(admin_api, **body)
    assert r.status_code == 422, r.content
    assert r.json()["error"]["field"] == field
    assert not WebhookEndpoint.objects.exists()


def test_malformed_json_and_missing_events_are_4xx(admin_api: Client) -> None:
    assert _post(admin_api, "/api/webhooks/", "{nope").status_code in (400, 422)
    r = _post(admin_api, "/api/webhooks/", {"url": "http://example.com/"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "events"
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000/", "http://localhost/", "http://[::1]/", "http://10.1.2.3/", "http://169.254.169.254/"],
)
def test_private_addresses_are_refused_unless_allowed(
    admin_api: Client, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.delenv("WFDASH_WEBHOOK_ALLOW_PRIVATE", raising=False)
    r = _create(admin_api, url=url)
    assert r.status_code == 422 and r.json()["error"]["field"] == "url"
    assert "public" in r.json()["error"]["message"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "address, refused",
    [
        ("127.0.0.1", True),
        ("10.0.0.1", True),
        ("172.16.5.4", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("fc00::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("2002:7f00:1::1", True),  # 6to4 wrapping 127.0.0.1
        ("2002:a00:1::1", True),  # 6to4 wrapping 10.0.0.1
        ("2002:c0a8:101::1", True),  # 6to4 wrapping 192.168.1.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", True),  # Teredo
        ("64:ff9b::7f00:1", True),  # NAT64 wrapping 127.0.0.1
        ("64:ff9b::a00:1", True),  # NAT64 wrapping 10.0.0.1
        ("64:ff9b:1::a9fe:a9fe", True),  # local-use NAT64 wrapping 169.254.169.254
        ("fec0::1", True),  # site-local
        ("2002:5db8:d70e::1", False),  # 6to4 wrapping a public address
        ("feff::1", True),
        ("ff02::1", True),
        ("93.184.215.14", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_which_addresses_are_refused(address: str, refused: bool) -> None:
    assert (webhooks.refused_reason(address) is not None) is refused


def test_permissions(private_ok: None) -> None:
    anonymous = Client()
    assert anonymous.get("/api/webhooks/").status_code == 401
    assert _create(anonymous).status_code == 401
    runs_only = _client(_user("runner", "view_run", "add_run", "change_run"))
    r = runs_only.get("/api/webhooks/")
    assert r.status_code == 403 and "view_webhookendpoint" in r.json()["error"]["message"]
    assert _create(runs_only).status_code == 403
    viewer = _client(_user("viewer", "view_webhookendpoint", "view_run"))
    assert viewer.get("/api/webhooks/").status_code == 200
    assert _create(viewer).status_code == 403
    assert not WebhookEndpoint.objects.exists()
    endpoint, _ = webhooks.create_endpoint("http://127.0.0.1:9/", ALL)
    assert viewer.delete(f"/api/webhooks/{endpoint.id}/").status_code == 403
    assert _post(viewer, f"/api/webhooks/{endpoint.id}/rotate/", {}).status_code == 403
    assert WebhookEndpoint.objects.get().secret == endpoint.secret
    # A session without its CSRF token cannot create either.
    session = Client(enforce_csrf_checks=True)
    session.force_login(_user("sess", "add_webhookendpoint", "view_webhookendpoint", "view_run"))
    assert _create(session).status_code in (401, 403)
    assert WebhookEndpoint.objects.count() == 1


WEBHOOK_PERMS = ("view_webhookendpoint", "add_webhookendpoint", "change_webhookendpoint", "delete_webhookendpoint")


def test_webhook_permissions_without_view_run_see_nothing(private_ok: None) -> None:
    """Deliveries carry runs' results and errors, and an endpoint receives every run's:
    webhook permissions are worth nothing without the permission to see runs."""
    endpoint, _ = webhooks.create_endpoint("http://127.0.0.1:9/", ALL)
    blind = _client(_user("blind", *WEBHOOK_PERMS))
    for r in (blind.get("/api/webhooks/"), blind.get(f"/api/webhooks/{endpoint.id}/"), _create(blind)):
        assert r.status_code == 403 and "runs.view_run" in r.json()["error"]["message"]
    assert blind.delete(f"/api/webhooks/{endpoint.id}/").status_code == 403
    assert _post(blind, f"/api/webhooks/{endpoint.id}/rotate/", {}).status_code == 403
    assert WebhookEndpoint.objects.count() == 1


def test_the_full_url_is_shown_only_to_who_may_change_webhooks(private_ok: None) -> None:
    url = "http://127.0.0.1:9/services/T000/B000/XXXXsecretXXXX?token=tok-123"
    redacted = "http://127.0.0.1:9/…"
    endpoint, _ = webhooks.create_endpoint(url, ALL)
    assert str(endpoint) == redacted
    viewer = _client(_user("viewer", "view_webhookendpoint", "view_run"))
    changer = _client(_user("changer", "view_webhookendpoint", "change_webhookendpoint", "view_run"))
    for client, shown in ((viewer, redacted), (changer, url)):
        assert client.get("/api/webhooks/").json()["items"][0]["url"] == shown
        assert client.get(f"/api/webhooks/{endpoint.id}/").json()["url"] == shown
    # The admin: list and detail, and the delivery pages that link to the endpoint.
    _finish(start_run("chain", {"steps": 1}), RunStatus.SUCCEEDED)
    webhooks.dispatch()
    delivery = WebhookDelivery.objects.get()
    staff_viewer = _user("staffviewer", "view_webhookendpoint", "view_run")
    staff_changer = _user("staffchanger", "view_webhookendpoint", "change_webhookendpoint", "view_run")
    get_user_model().objects.update(is_staff=True)
    pages = [
        "/admin/runs/webhookendpoint/",
        f"/admin/runs/webhookendpoint/{endpoint.id}/change/",
        "/admin/runs/webhookdelivery/",
        f"/admin/runs/webhookdelivery/{delivery.id}/change/",
        f"/runs/{delivery.run_id}/",
    ]
    c = Client()
    c.force_login(staff_viewer)
    for page in pages:
        body = c.get(page).content.decode()
        assert "XXXXsecretXXXX" not in body and "tok-123" not in body, page
    assert "127.0.0.1:9/…" in c.get("/admin/runs/webhookendpoint/").content.decode()
    c.force_login(staff_changer)
    assert "XXXXsecretXXXX" in c.get("/admin/runs/webhookendpoint/").content.decode()
    assert "XXXXsecretXXXX" in c.get(f"/admin/runs/webhookendpoint/{endpoint.id}/change/").content.decode()


def test_rotate_shows_a_new_secret_once_and_delete(admin_api: Client, private_ok: None) -> None:
    created = _create(admin_api).json()
    r = _post(admin_api, f"/api/webhooks/{created['id']}/rotate/", {})
    assert r.status_code == 200
    secret = r.json()["secret"]
    assert secret.startswith("whsec_") and secret != created["secret"]
    assert WebhookEndpoint.objects.get().secret == secret
    assert secret not in admin_api.get(f"/api/webhooks/{created['id']}/").content.decode()
    assert admin_api.delete(f"/api/webhooks/{created['id']}/").status_code == 204
    assert admin_api.get(f"/api/webhooks/{created['id']}/").status_code == 404
    assert admin_api.delete(f"/api/webhooks/{created['id']}/").status_code == 404


def test_list_is_paged(admin_api: Client, private_ok: None) -> None:
    from runs import api_webhooks

    for _ in range(api_webhooks.PAGE_SIZE + 3):
        WebhookEndpoint.objects.create(url="http://127.0.0.1:9/", events=ALL, secret=webhooks.new_secret())
    first = admin_api.get("/api/webhooks/").json()
    assert len(first["items"]) == api_webhooks.PAGE_SIZE and first["next_cursor"]
    rest = admin_api.get(f"/api/webhooks/?after={first['next_cursor']}").json()
    assert len(rest["items"]) == 3 and rest["next_cursor"] is None
    assert admin_api.get("/api/webhooks/?after=zzz").status_code == 400


# -- transitions and dispatch ------------------------------------------------------------


def _endpoint(workflow: str | None = None, events: list[str] = ALL, active: bool = True) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url="http://127.0.0.1:9/", workflow=workflow, events=events, secret=webhooks.new_secret(), active=active
    )


def _finish(run: Run, status: str, **fields: Any) -> None:
    Run.objects.filter(pk=run.pk).update(status=status, updated_at=timezone.now(), **fields)


def test_a_status_change_records_a_transition_in_its_own_transaction() -> None:
    run = start_run("chain", {"steps": 1})
    _finish(run, RunStatus.SUCCEEDED)
    assert not RunTransition.objects.exists()  # no active endpoint: nothing recorded
    _endpoint(active=False)
    run2 = start_run("chain", {"steps": 1})
    _finish(run2, RunStatus.FAILED)
    assert not RunTransition.objects.exists()
    _endpoint()
    run3 = start_run("chain", {"steps": 1})
    _finish(run3, RunStatus.RUNNING)  # not a notified status
    with pytest.raises(RuntimeError), transaction.atomic():
        _finish(run3, RunStatus.WAITING)
        raise RuntimeError("rolled back")
    assert not RunTransition.objects.exists()
    _finish(run3, RunStatus.WAITING)
    _finish(run3, RunStatus.WAITING)  # unchanged: no second record
    run3.request_cancel()
    assert list(RunTransition.objects.order_by("id").values_list("run_id", "status")) == [
        (run3.id, "waiting"),
        (run3.id, "cancelled"),
    ]


def test_dispatch_respects_events_and_workflows_and_is_atomic() -> None:
    chain_ok = _endpoint("chain", ["succeeded"])
    any_failed = _endpoint(None, ["failed", "cancelled"])
    _endpoint("approval", ALL)
    ok = start_run("chain", {"steps": 1})
    bad = start_run("chain", {"steps": 1})
    _finish(ok, RunStatus.SUCCEEDED, result={"ticks": 1, "big": "x" * 5000})
    _finish(bad, RunStatus.FAILED, error="step tick failed: boom")
    assert webhooks.dispatch() == 2
    assert webhooks.dispatch() == 0
    assert not RunTransition.objects.exists()
    rows = {(d.endpoint_id, d.run_id, d.event): d for d in WebhookDelivery.objects.all()}
    assert set(rows) == {(chain_ok.id, ok.id, "succeeded"), (any_failed.id, bad.id, "failed")}
    sent = rows[(chain_ok.id, ok.id, "succeeded")].payload
    assert sent["type"] == "run.succeeded"
    data = sent["data"]
    assert data["run_id"] == str(ok.id) and data["workflow"] == "chain" and data["status"] == "succeeded"
    assert data["result_truncated"] and len(data["result"]) == webhooks.RESULT_PREVIEW_CHARS
    assert data["url"] == f"/runs/{ok.id}/" and data["api_url"] == f"/api/runs/{ok.id}/"
    failed = rows[(any_failed.id, bad.id, "failed")].payload["data"]
    assert failed["error"] == "step tick failed: boom" and "result" not in failed
    assert all(d.status == "pending" and d.message_id.startswith("msg_") for d in rows.values())


def test_links_are_absolute_with_a_public_url(settings: Any) -> None:
    settings.WFDASH_PUBLIC_URL = "https://wfdash.example.com"
    _endpoint()
    run = start_run("chain", {"steps": 1})
    _finish(run, RunStatus.CANCELLED, error="cancelled")
    webhooks.dispatch()
    data = WebhookDelivery.objects.get().payload["data"]
    assert data["url"] == f"https://wfdash.example.com/runs/{run.id}/"
    assert data["api_url"] == f"https://wfdash.example.com/api/runs/{run.id}/"


def test_a_delivery_is_claimed_by_one_worker_at_a_time() -> None:
    from runs.webhook_delivery import claim, record

    _endpoint()
    run = start_run("chain", {"steps": 1})
    _finish(run, RunStatus.SUCCEEDED)
    webhooks.dispatch()
    first = claim("a", 10)
    assert [d.attempts for d in first] == [1]
    assert claim("b", 10) == []  # leased by a
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())  # a's lease ran out: a died
    taken = claim("b", 10)
    assert [d.attempts for d in taken] == [2]
    assert record(first[0], "a", 204, "", "", timezone.now()) == "lease lost"  # a's late word is ignored
    assert WebhookDelivery.objects.get().status == "delivering"
    assert record(taken[0], "b", 500, "HTTP 500", "oops", timezone.now()) == "pending"
    d = WebhookDelivery.objects.get()
    assert d.status == "pending" and d.last_response_code == 500 and d.leased_by == ""
    assert d.next_attempt_at > timezone.now()


def test_it_gives_up_after_the_window(settings: Any) -> None:
    from datetime import timedelta

    from runs.webhook_delivery import claim, record

    settings.WFDASH_WEBHOOK_GIVE_UP_SECONDS = 3600
    _endpoint()
    run = start_run("chain", {"steps": 1})
    _finish(run, RunStatus.SUCCEEDED)
    webhooks.dispatch()
    WebhookDelivery.objects.update(created_at=timezone.now() - timedelta(seconds=3599))
    (d,) = claim("a", 1)
    assert record(d, "a", None, "ConnectError", "", timezone.now()) == "failed"
    assert WebhookDelivery.objects.get().status == "failed"


# -- admin and the run page ---------------------------------------------------------------


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="pw-root-123"))
    return client


def test_admin_adds_shows_the_secret_once_rotates_and_retries(superuser_client: Client, private_ok: None) -> None:
    c = superuser_client
    assert c.get("/admin/runs/webhookendpoint/add/").status_code == 200
    r = c.post(
        "/admin/runs/webhookendpoint/add/",
        {"url": "http://127.0.0.1:9/hook", "workflow": "chain", "events": ["succeeded", "failed"], "active": "on"},
        follow=True,
    )
    assert r.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == ["succeeded", "failed"] and endpoint.workflow == "chain"
    assert endpoint.secret in r.content.decode()  # the message, once
    for url in ("/admin/runs/webhookendpoint/", f"/admin/runs/webhookendpoint/{endpoint.id}/change/"):
        page = c.get(url)
        assert page.status_code == 200 and endpoint.secret not in page.content.decode()
    bad = c.post("/admin/runs/webhookendpoint/add/", {"url": "ftp://x/", "events": ["succeeded"]})
    assert bad.status_code == 200 and WebhookEndpoint.objects.count() == 1
    old = endpoint.secret
    r = c.post(
        "/admin/runs/webhookendpoint/",
        {"action": "rotate_secret", "_selected_action": [str(endpoint.id)]},
        follow=True,
    )
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.secret in r.content.decode()

    run = start_run("chain", {"steps": 1})
    _finish(run, RunStatus.SUCCEEDED)
    webhooks.dispatch()
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.update(status="failed", next_attempt_at=timezone.now(), last_error="HTTP 500")
    for url in (
        "/admin/runs/webhookdelivery/",
        "/admin/runs/webhookdelivery/?status=failed",
        f"/admin/runs/webhookdelivery/?q={str(run.id)[:8]}",
        f"/admin/runs/webhookdelivery/{delivery.id}/change/",
    ):
        page = c.get(url)
        assert page.status_code == 200, url
        assert delivery.message_id[4:12] in page.content.decode() or "msg_" in page.content.decode()
    c.post("/admin/runs/webhookdelivery/", {"action": "retry", "_selected_action": [str(delivery.id)]})
    assert WebhookDelivery.objects.get().status == "pending"


def test_admin_needs_the_webhook_permissions(private_ok: None) -> None:
    c = Client()
    c.force_login(_user("staffer", "view_run"))
    get_user_model().objects.filter(username="staffer").update(is_staff=True)
    assert c.get("/admin/runs/webhookendpoint/").status_code == 403
    assert c.get("/admin/runs/webhookdelivery/").status_code == 403
    viewer = _user("staffview", "view_webhookendpoint", "view_run")
    get_user_model().objects.filter(pk=viewer.pk).update(is_staff=True)
    c.force_login(viewer)
    assert c.get("/admin/runs/webhookendpoint/").status_code == 200
    assert c.get("/admin/runs/webhookendpoint/add/").status_code == 403
    # Every webhook permission but not view_run: no endpoint, no delivery (its payload is a run's result).
    endpoint = _endpoint()
    _finish(start_run("chain", {"steps": 1}), RunStatus.SUCCEEDED, result={"answer": "private"})
    webhooks.dispatch()
    delivery = WebhookDelivery.objects.get()
    blind = _user("staffblind", *WEBHOOK_PERMS)
    get_user_model().objects.filter(pk=blind.pk).update(is_staff=True)
    c.force_login(blind)
    assert c.get(f"/api/runs/{delivery.run_id}/").status_code == 403
    for url in (
        "/admin/runs/webhookendpoint/",
        "/admin/runs/webhookendpoint/add/",
        f"/admin/runs/webhookendpoint/{endpoint.id}/change/",
        f"/admin/runs/webhookendpoint/{endpoint.id}/delete/",
        "/admin/runs/webhookdelivery/",
        f"/admin/runs/webhookdelivery/{delivery.id}/change/",
    ):
        r = c.get(url)
        assert r.status_code in (302, 403) and "private" not in r.content.decode(), url
    assert "Webhook" not in c.get("/admin/").content.decode()


def _secret_stored_outside(response: Any, secret: str) -> bool:
    """Whether `secret` went anywhere but the body: a cookie, or a message in the session."""
    from django.contrib.messages import get_messages

    cookies = " ".join(morsel.OutputString() for morsel in response.cookies.values())
    stored = [str(m) for m in get_messages(response.wsgi_request)]
    session = response.wsgi_request.session
    return secret in cookies or any(secret in m for m in stored) or secret in str(dict(session.items()))


def test_admin_shows_secrets_in_the_response_never_in_messages(superuser_client: Client, private_ok: None) -> None:
    c = superuser_client
    r = c.post(
        "/admin/runs/webhookendpoint/add/",
        {"url": "http://127.0.0.1:9/hook", "workflow": "", "events": ["succeeded"], "active": "on"},
    )
    endpoint = WebhookEndpoint.objects.get()
    assert r.status_code == 200 and endpoint.secret in r.content.decode()
    assert "shown this once" in r.content.decode() and "no-store" in r["Cache-Control"]
    assert not _secret_stored_outside(r, endpoint.secret)
    r = c.post("/admin/runs/webhookendpoint/", {"action": "rotate_secret", "_selected_action": [str(endpoint.id)]})
    endpoint.refresh_from_db()
    assert r.status_code == 200 and endpoint.secret in r.content.decode()
    assert not _secret_stored_outside(r, endpoint.secret)
    assert endpoint.secret not in c.get("/admin/runs/webhookendpoint/").content.decode()


def test_the_run_page_lists_the_runs_deliveries_to_those_who_may_see_webhooks(superuser_client: Client) -> None:
    _endpoint()
    run = start_run("chain", {"steps": 1})
    _finish(run, RunStatus.FAILED, error="boom")
    webhooks.dispatch()
    WebhookDelivery.objects.update(last_response_code=500, attempts=2, last_error="HTTP 500")
    page = superuser_client.get(f"/runs/{run.id}/").content.decode()
    assert 'id="webhook-deliveries"' in page and "127.0.0.1" in page and "HTTP 500" in page
    runs_only = Client()
    runs_only.force_login(_user("runner", "view_run"))
    page = runs_only.get(f"/runs/{run.id}/").content.decode()
    assert 'id="webhooks"' not in page


def test_admin_delete_counts_the_deliveries_instead_of_listing_them(superuser_client: Client) -> None:
    endpoint = _endpoint()
    for _ in range(3):
        _finish(start_run("chain", {"steps": 1}), RunStatus.SUCCEEDED)
    webhooks.dispatch()
    page = superuser_client.get(f"/admin/runs/webhookendpoint/{endpoint.id}/delete/").content.decode()
    assert "and 3 webhook deliveries with them" in page
    superuser_client.post(f"/admin/runs/webhookendpoint/{endpoint.id}/delete/", {"post": "yes"})
    assert not WebhookEndpoint.objects.exists() and not WebhookDelivery.objects.exists()


def test_an_inactive_endpoints_deliveries_wait() -> None:
    from runs.webhook_delivery import claim

    endpoint = _endpoint()
    _finish(start_run("chain", {"steps": 1}), RunStatus.SUCCEEDED)
    webhooks.dispatch()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    assert claim("a", 10) == [] and WebhookDelivery.objects.get().status == "pending"
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=True)
    assert len(claim("a", 10)) == 1


# -- resolving names, and the trigger after a table rebuild --------------------------------


def test_a_resolver_that_does_not_answer_is_a_clear_422(
    admin_api: Client, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    import threading

    release = threading.Event()

    def hung(host: str, port: int) -> list[Any]:
        release.wait(30)
        raise OSError("released")

    monkeypatch.setattr(webhooks, "_getaddrinfo", hung)
    settings.WFDASH_WEBHOOK_DNS_TIMEOUT_SECONDS = 0.2
    try:
        r = _create(admin_api, url="http://hangs.example/hook")
    finally:
        release.set()
    assert r.status_code == 422, r.content
    error = r.json()["error"]
    assert error["field"] == "url" and "no DNS answer" in error["message"]
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_sqlite_rebuild_of_runs_run_loses_the_trigger_and_migrate_puts_it_back() -> None:
    """A later migration altering runs_run makes SQLite rebuild it (copy, drop, rename),
    dropping its triggers; the post_migrate repair puts the webhook trigger back."""
    from django.core.management.sql import emit_post_migrate_signal
    from django.db import connection, models

    from runs import webhook_triggers

    if connection.vendor != "sqlite":
        pytest.skip("SQLite rebuilds tables to alter them")
    old = Run._meta.get_field("error")
    new = models.TextField(blank=True, null=True)
    new.set_attributes_from_name("error")
    new.model = Run
    assert webhook_triggers.installed(connection)
    try:
        with connection.schema_editor() as editor:
            editor.alter_field(Run, old, new)
        assert not webhook_triggers.installed(connection)  # what the rebuild did
        emit_post_migrate_signal(verbosity=0, interactive=False, db=connection.alias)
        assert webhook_triggers.installed(connection)
        assert webhook_triggers.repair(connection) is False
        _endpoint()
        run = start_run("chain", {"steps": 1})
        _finish(run, RunStatus.SUCCEEDED)
        assert list(RunTransition.objects.values_list("run_id", "status")) == [(run.id, "succeeded")]
    finally:
        with connection.schema_editor() as editor:
            editor.alter_field(Run, new, old)
        webhook_triggers.repair(connection)
    assert webhook_triggers.installed(connection)


def test_installing_the_trigger_again_keeps_one_trigger() -> None:
    """What migration 0011 and the repair run is idempotent on both databases."""
    from django.db import connection

    from runs import webhook_triggers

    webhook_triggers.install(connection)
    webhook_triggers.install(connection)
    assert webhook_triggers.installed(connection) and webhook_triggers.repair(connection) is False
    _endpoint()
    run = start_run("chain", {"steps": 1})
    _finish(run, RunStatus.FAILED)
    assert list(RunTransition.objects.values_list("run_id", "status")) == [(run.id, "failed")]
