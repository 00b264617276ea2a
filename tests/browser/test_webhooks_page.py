"""The run page's Webhooks section in Chromium: a worker process delivers to a receiver on
127.0.0.1 that fails twice, and the page lists the delivery with its code and attempts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import orm_wait
from tests.runs.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)

PRIVATE_OK = {"WFDASH_WEBHOOK_ALLOW_PRIVATE": "1", "WFDASH_WEBHOOK_RETRY_DELAYS": "0.05"}


def _set_up(url: str, username: str) -> str:
    from django.contrib.auth.models import Permission, User

    from runs import webhooks

    User.objects.get(username=username).user_permissions.add(Permission.objects.get(codename="view_webhookendpoint"))
    _, secret = webhooks.create_endpoint(url, ["succeeded"], "chain")
    return secret


def _start() -> str:
    from runs.models import start_run

    return str(start_run("chain", {"steps": 1}).id)


def _delivered(run_id: str) -> bool:
    from runs.models import WebhookDelivery

    return WebhookDelivery.objects.filter(run_id=run_id, status="succeeded").exists()


def test_the_run_page_lists_its_webhook_deliveries(
    page: Any, orm: Any, spawn: Any, user: Any, monkeypatch: pytest.MonkeyPatch, shots_dir: Path
) -> None:
    monkeypatch.setenv("WFDASH_WEBHOOK_ALLOW_PRIVATE", "1")
    receiver = Receiver(fail_first=2).start()
    try:
        receiver.secret = orm(_set_up, receiver.url, user.username)
        spawn("wfworker", "--poll-interval", "0.05", env=PRIVATE_OK)
        run_id = orm(_start)
        orm_wait(orm, lambda: _delivered(run_id))
        page.goto(f"/runs/{run_id}/")
        row = page.locator("#webhook-deliveries tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("127.0.0.1")
        expect(row.locator("td").nth(1)).to_have_text("succeeded")
        expect(row.locator("td").nth(2)).to_have_text("succeeded")
        expect(row.locator("td").nth(3)).to_have_text("204")
        expect(row.locator("td").nth(4)).to_have_text("3")
        assert [r.answered for r in receiver.received] == [500, 500, 204]
        assert all(r.verified for r in receiver.received)
        page.locator("#webhooks").screenshot(path=shots_dir / "webhooks-run-page.png")
    finally:
        receiver.stop()
