"""The admin: read-only pages for runs, checkpoints and blobs, with cancel and fork actions."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runs.models import Blob, Checkpoint, Run, RunStatus

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
START = {"type": "ChainStart", "data": {"steps": 1, "sleep": 0.0, "payload": SCRIPT}}
STATE = {
    "version": 1,
    "store": {"steps": {"v": 1}, "sleep": {"v": 0.0}},
    "queued": [],
    "in_flight": [],
    "collect": [],
    "waiters": [],
    "awaiting_input": False,
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    """admin_client's superuser gets a password; the default hasher takes most of a second."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_run(**fields: Any) -> Run:
    return Run.objects.create(**{"workflow": "chain", "start_event": START, **fields})


def make_checkpoint(run: Run, seq: int = 1, **fields: Any) -> Checkpoint:
    values: dict[str, Any] = {
        "run": run,
        "workflow": "chain",
        "seq": seq,
        "last_completed_step": "begin",
        "input_event_type": "ChainStart",
        "output_event_type": "Tick",
        "input_event": START,
        "output_event": {"type": "Tick", "data": {"n": 1}},
        "state": STATE,
        "snapshot_seq": seq,
    }
    return Checkpoint.objects.create(**{**values, **fields})


def url(name: str, *args: Any) -> str:
    return reverse(f"admin:runs_{name}", args=args)


def act(client: Client, changelist: str, action: str, *pks: Any) -> Any:
    """Run a changelist action on `pks`; follow the redirect so its messages render."""
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in pks], "index": 0}
    return client.post(changelist, data, follow=True)


def page_messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_it_renders_the_run_changelist_with_filters_and_searches(admin_client: Client) -> None:
    run = make_run()
    other = make_run(workflow="joke", start_event=None, status=RunStatus.SUCCEEDED)
    changelist = url("run_changelist")

    for query, shown, hidden in [
        ({}, [run, other], []),
        ({"status__exact": "queued"}, [run], [other]),
        ({"workflow": "joke"}, [other], [run]),
        ({"workflow": "unregistered"}, [], [run, other]),
        ({"q": str(run.pk)}, [run], [other]),
        ({"q": f"  {run.pk.hex}  "}, [run], [other]),
        ({"q": "not-a-uuid' OR 1=1 --"}, [], [run, other]),
    ]:
        response = admin_client.get(changelist, query)
        assert response.status_code == 200, query
        listed = set(response.context["cl"].result_list)
        assert listed == set(shown), query
        assert not listed & set(hidden)

    response = admin_client.get(changelist, {"q": "nope"})
    assert any("not a UUID" in m for m in page_messages(response))


def test_it_renders_the_checkpoint_changelist_with_filters_and_searches(admin_client: Client) -> None:
    run = make_run()
    first = make_checkpoint(run)
    second = make_checkpoint(
        run,
        seq=2,
        last_completed_step="tick",
        input_event_type="Tick",
        output_event_type="StopEvent",
        input_event={"type": "Tick", "data": {"n": 1}},
        output_event={"type": "StopEvent", "data": {"result": {"ticks": 1}}},
    )
    stranger = make_checkpoint(make_run())
    changelist = url("checkpoint_changelist")

    for query, shown in [
        ({}, {first, second, stranger}),
        ({"workflow": "chain"}, {first, second, stranger}),
        ({"workflow": "joke"}, set()),
        ({"last_completed_step": "tick"}, {second}),
        ({"input_event_type": "ChainStart"}, {first, stranger}),
        ({"output_event_type": "StopEvent", "workflow": "chain"}, {second}),
        ({"run__id__exact": str(run.pk)}, {first, second}),
        ({"q": str(first.pk)}, {first}),
        ({"q": str(run.pk)}, {first, second}),
        ({"q": "<b>no</b>"}, set()),
    ]:
        response = admin_client.get(changelist, query)
        assert response.status_code == 200, query
        assert set(response.context["cl"].result_list) == shown, query

    # Filter choices come from the registered workflows, narrowed by the chosen one.
    response = admin_client.get(changelist, {"workflow": "chain"})
    content = response.content.decode()
    assert "?last_completed_step=tick&amp;workflow=chain" in content
    assert "StopEvent" in content


def test_it_renders_run_checkpoint_and_blob_change_pages(admin_client: Client) -> None:
    parent = make_checkpoint(make_run())
    run = make_run(
        parent_checkpoint=parent,
        fork_edits={"store": {"steps": 3}},
        status=RunStatus.FAILED,
        result={"ticks": 1},
        error="step tick failed: <b>boom</b>",
        error_traceback='Traceback (most recent call last):\n  File "<x>"\nValueError: <b>boom</b>',
        prompt_tokens=5,
        completion_tokens=7,
    )
    blob = Blob.objects.create(hash="a" * 64, data='{"big": "' + "x" * 300 + '"}')

    response = admin_client.get(url("run_change", run.pk))
    assert response.status_code == 200
    content = response.content.decode()
    assert '<pre class="wfdash-pre"' in content
    assert "step tick failed: &lt;b&gt;boom&lt;/b&gt;" in content
    assert "ValueError: &lt;b&gt;boom&lt;/b&gt;" in content
    assert "<b>boom</b>" not in content
    assert "&quot;steps&quot;: 3" in content  # fork edits, indented
    assert url("checkpoint_change", parent.pk) in content
    assert f"?run__id__exact={run.pk}" in content
    assert 'name="_save"' not in content  # view only

    response = admin_client.get(url("run_changelist"))
    assert response.status_code == 200
    assert '<td class="field-total_tokens">12</td>' in response.content.decode()
    assert url("checkpoint_change", parent.pk) in response.content.decode()
    response = admin_client.get(url("run_changelist"), {"parent_checkpoint__id__exact": str(parent.pk)})
    assert list(response.context["cl"].result_list) == [run]

    response = admin_client.get(url("blob_change", blob.pk))
    assert response.status_code == 200
    assert "&quot;big&quot;" in response.content.decode()
    response = admin_client.get(url("blob_changelist"), {"q": blob.pk})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [blob]
    assert response.context["cl"].result_list[0].size == len(blob.data)


def test_it_shows_checkpoint_json_pretty_and_escapes_script(admin_client: Client) -> None:
    checkpoint = make_checkpoint(make_run())

    response = admin_client.get(url("checkpoint_change", checkpoint.pk))

    assert response.status_code == 200
    content = response.content.decode()
    assert SCRIPT not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert '<pre class="wfdash-pre"' in content
    # Indented, keys sorted (PostgreSQL's jsonb reorders them).
    assert "{\n  &quot;data&quot;: {\n    &quot;payload&quot;: &quot;&lt;script&gt;" in content
    assert "&quot;steps&quot;: 1\n  },\n  &quot;type&quot;: &quot;ChainStart&quot;\n}</pre>" in content
    assert "&quot;steps&quot;: {\n      &quot;v&quot;: 1\n    }" in content  # ctx_state as stored
    assert 'name="_save"' not in content


def test_it_shows_a_checkpoint_store_with_its_blobs_resolved(admin_client: Client) -> None:
    digest = "b" * 64
    Blob.objects.create(hash=digest, data='"a long document"')
    state = {**STATE, "store": {**STATE["store"], "payload": {"b": digest}, "lost": {"b": "c" * 64}}}
    ok = make_checkpoint(make_run(), state={**state, "store": {**STATE["store"], "payload": {"b": digest}}})
    broken = make_checkpoint(make_run(), state=state)

    content = admin_client.get(url("checkpoint_change", ok.pk)).content.decode()
    assert "&quot;payload&quot;: &quot;a long document&quot;" in content
    assert url("blob_change", digest) in content

    response = admin_client.get(url("checkpoint_change", broken.pk))
    assert response.status_code == 200
    assert "cannot expand the store" in response.content.decode()
    assert f"{'c' * 64} (missing)" in response.content.decode()


def test_it_forbids_adding_changing_and_deleting_checkpoints_and_blobs(admin_client: Client) -> None:
    checkpoint = make_checkpoint(make_run())
    blob = Blob.objects.create(hash="d" * 64, data="1")

    assert admin_client.get(url("checkpoint_add")).status_code == 403
    assert admin_client.post(url("checkpoint_add"), {"workflow": "x"}).status_code == 403
    response = admin_client.post(
        url("checkpoint_change", checkpoint.pk),
        {"workflow": "tampered", "seq": 9, "last_completed_step": "evil", "_save": "Save"},
    )
    assert response.status_code == 403
    checkpoint.refresh_from_db()
    assert (checkpoint.workflow, checkpoint.seq, checkpoint.last_completed_step) == ("chain", 1, "begin")
    assert admin_client.get(url("checkpoint_delete", checkpoint.pk)).status_code == 403
    assert admin_client.post(url("checkpoint_delete", checkpoint.pk), {"post": "yes"}).status_code == 403
    assert Checkpoint.objects.filter(pk=checkpoint.pk).exists()
    response = act(admin_client, url("checkpoint_changelist"), "delete_selected", checkpoint.pk)
    assert Checkpoint.objects.filter(pk=checkpoint.pk).exists()

    assert admin_client.get(url("blob_add")).status_code == 403
    assert admin_client.post(url("blob_change", blob.pk), {"data": "2"}).status_code == 403
    assert admin_client.get(url("blob_delete", blob.pk)).status_code == 403
    assert admin_client.get(url("run_add")).status_code == 403
    blob.refresh_from_db()
    assert blob.data == "1"


def test_it_cancels_a_queued_run_and_reports_a_finished_one(admin_client: Client) -> None:
    queued = make_run()
    done = make_run(status=RunStatus.SUCCEEDED, finished_at=timezone.now())

    response = act(admin_client, url("run_changelist"), "cancel", queued.pk, done.pk)

    assert response.status_code == 200
    queued.refresh_from_db()
    done.refresh_from_db()
    assert queued.status == RunStatus.CANCELLED
    assert done.status == RunStatus.SUCCEEDED
    assert page_messages(response) == ["1 run cancelled; 1 run already finished."]


def test_it_asks_a_running_run_to_stop_from_its_change_page(admin_client: Client) -> None:
    running = make_run(status=RunStatus.RUNNING, worker_id="w1")
    page = url("run_change", running.pk)
    assert "Cancel this run" in admin_client.get(page).content.decode()

    response = admin_client.post(
        page, {"CHANGE_FORM-action": "cancel", ACTION_CHECKBOX_NAME: str(running.pk)}, follow=True
    )

    assert response.status_code == 200
    running.refresh_from_db()
    assert running.status == RunStatus.RUNNING and running.cancel_requested
    assert page_messages(response) == ["0 runs cancelled; 1 running run asked to stop; 0 runs already finished."]


def test_it_forks_a_checkpoint_into_a_new_run(admin_client: Client, admin_user: Any) -> None:
    checkpoint = make_checkpoint(make_run(status=RunStatus.SUCCEEDED))

    response = act(admin_client, url("checkpoint_changelist"), "fork", checkpoint.pk)

    assert response.status_code == 200
    child = Run.objects.get(parent_checkpoint=checkpoint)
    assert child.status == RunStatus.QUEUED
    assert child.start_event == START
    assert child.created_by == admin_user
    [message] = page_messages(response)
    assert message.startswith("Forked 1 checkpoint; new run: ")
    assert url("run_change", child.pk) in message
    assert f'<a href="{url("run_change", child.pk)}">{child.pk}</a>' in response.content.decode()


def test_it_forks_from_the_checkpoint_change_page(admin_client: Client) -> None:
    checkpoint = make_checkpoint(make_run())
    page = url("checkpoint_change", checkpoint.pk)
    assert "Fork from this checkpoint" in admin_client.get(page).content.decode()

    response = admin_client.post(page, {"CHANGE_FORM-action": "fork", ACTION_CHECKBOX_NAME: str(checkpoint.pk)})

    assert response.status_code == 302
    assert Run.objects.filter(parent_checkpoint=checkpoint).count() == 1


def test_it_reports_a_tampered_checkpoint_instead_of_forking_it(admin_client: Client) -> None:
    good = make_checkpoint(make_run())
    tampered = make_checkpoint(make_run(), output_event={"type": "os.system", "data": {"command": "rm -rf /"}})
    before = Run.objects.count()

    response = act(admin_client, url("checkpoint_changelist"), "fork", tampered.pk)

    assert response.status_code == 200
    assert Run.objects.count() == before
    [message] = response.context["messages"]
    assert message.level_tag == "error"
    assert f"Checkpoint {tampered.pk} was not forked" in str(message)
    assert "os.system" in str(message)

    # One bad row does not stop the others.
    response = act(admin_client, url("checkpoint_changelist"), "fork", tampered.pk, good.pk)
    assert Run.objects.count() == before + 1
    assert sorted(m.level_tag for m in response.context["messages"]) == ["error", "success"]


def test_it_lists_without_per_row_queries(admin_client: Client) -> None:
    parent = make_checkpoint(make_run())

    def count(name: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url(name)).status_code == 200
        return len(queries)

    few = {name: count(name) for name in ("run_changelist", "checkpoint_changelist", "blob_changelist")}
    for i in range(5):
        run = make_run(parent_checkpoint=parent)
        make_checkpoint(run, seq=i + 1)
        Blob.objects.create(hash=f"{i:064d}", data=str(i))
    many = {name: count(name) for name in few}

    assert many == few


def test_it_redirects_anonymous_users_to_the_admin_login(client: Client) -> None:
    checkpoint = make_checkpoint(make_run())
    for page in (url("run_changelist"), url("checkpoint_change", checkpoint.pk), url("blob_changelist")):
        response = client.get(page)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    response = act(client, url("checkpoint_changelist"), "fork", checkpoint.pk)
    assert response.redirect_chain[0][0].startswith(reverse("admin:login"))
    assert not Run.objects.filter(parent_checkpoint=checkpoint).exists()


def test_it_keeps_staff_without_permissions_from_the_actions(client: Client, django_user_model: Any) -> None:
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "view_checkpoint"]))
    client.force_login(staff)
    queued = make_run()
    checkpoint = make_checkpoint(make_run())

    assert client.get(url("run_change", queued.pk)).status_code == 200
    response = act(client, url("run_changelist"), "cancel", queued.pk)
    assert response.status_code == 200
    act(client, url("checkpoint_changelist"), "fork", checkpoint.pk)

    queued.refresh_from_db()
    assert queued.status == RunStatus.QUEUED
    assert not Run.objects.filter(parent_checkpoint=checkpoint).exists()


def test_it_redirects_to_the_list_for_unknown_or_malformed_ids(admin_client: Client) -> None:
    for page in (url("checkpoint_change", uuid.uuid4()), url("run_change", "not-a-uuid")):
        response = admin_client.get(page, follow=True)
        assert response.status_code == 200
        assert any("doesn’t exist" in m for m in page_messages(response))


# -- ids by prefix, readable durations, short ids ----------------------------------------

TWIN_A = uuid.UUID("abcdef01-0000-4000-8000-000000000001")
TWIN_B = uuid.UUID("abcdef02-0000-4000-8000-000000000002")


def listed(client: Client, name: str, query: dict[str, str]) -> set[Any]:
    response = client.get(url(name), query)
    assert response.status_code == 200
    return set(response.context["cl"].result_list)


def test_it_finds_runs_by_an_id_prefix(admin_client: Client) -> None:
    a, b = make_run(id=TWIN_A), make_run(id=TWIN_B)
    make_run()
    assert listed(admin_client, "run_changelist", {"q": "abcdef01"}) == {a}
    assert listed(admin_client, "run_changelist", {"q": "abcdef"}) == {a, b}


def test_it_finds_checkpoints_by_their_or_their_runs_id_prefix(admin_client: Client) -> None:
    run = make_run(id=TWIN_A)
    first, second = make_checkpoint(run), make_checkpoint(run, seq=2)
    other = make_checkpoint(make_run(), id=uuid.UUID("abcdef99-0000-4000-8000-000000000003"))
    assert listed(admin_client, "checkpoint_changelist", {"q": "abcdef01"}) == {first, second}
    assert listed(admin_client, "checkpoint_changelist", {"q": "abcdef99"}) == {other}


def test_it_finds_activity_by_a_run_id_prefix(admin_client: Client) -> None:
    from runs.models import Activity

    mine = Activity.record(make_run(id=TWIN_A), Activity.Action.STARTED)
    Activity.record(make_run(), Activity.Action.STARTED)
    assert listed(admin_client, "activity_changelist", {"q": "abcdef01"}) == {mine}


def test_it_explains_a_search_that_is_no_id_prefix(admin_client: Client) -> None:
    make_run(id=TWIN_A)
    response = admin_client.get(url("run_changelist"), {"q": "abc"})
    assert set(response.context["cl"].result_list) == set()
    assert any("its first 6+ hex digits" in m for m in page_messages(response))


def test_it_shows_checkpoint_durations_readably(admin_client: Client) -> None:
    make_checkpoint(make_run(), duration_ms=51.24200015416136)
    page = admin_client.get(url("checkpoint_changelist")).content.decode()
    assert "51.2 ms" in page and "51.242" not in page


def test_it_shows_a_checkpoints_duration_readably_on_its_page(admin_client: Client) -> None:
    c = make_checkpoint(make_run(), duration_ms=0.25)
    page = admin_client.get(url("checkpoint_change", c.pk)).content.decode()
    assert "250 µs" in page


def test_it_shows_short_ids_with_the_whole_id_on_hover(admin_client: Client) -> None:
    run = make_run(id=TWIN_A)
    page = admin_client.get(url("run_changelist")).content.decode()
    assert f'<span class="wfdash-id" title="{TWIN_A}">abcdef01</span>' in page
    assert f">{TWIN_A}<" not in page
    assert reverse("admin:runs_run_change", args=[run.pk]) in page


def test_it_keeps_list_cells_on_one_line(admin_client: Client) -> None:
    page = admin_client.get(url("run_changelist")).content.decode()
    assert "wfdash/admin.css" in page
    from django.contrib.staticfiles import finders

    css = Path(str(finders.find("wfdash/admin.css"))).read_text()
    assert "#result_list td, #result_list th { white-space: nowrap; }" in css
