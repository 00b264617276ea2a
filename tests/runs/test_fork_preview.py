"""Fork previews and refusals against a recorded code version: model, API, pages, CLI, filters.

The checkpoint's run is given a CodeVersion whose manifest is the `chain` workflow's as it
is now, edited the way an older release of it would differ. test_code_versions_workers.py
does the same with real modules and real workers.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs import fork_preview
from runs.examples.chain import ChainFlow
from runs.models import Activity, Checkpoint, CodeVersion, Run, RunStatus, fork_run
from tests.runs import factories
from wfdash.workflow.code_version import manifest

pytestmark = pytest.mark.django_db

OLD_TICK = "    return Tick(n=ev.n + 1)\n"
OLD_TICK_BEFORE = "    return Tick(n=ev.n + 2)\n"  # the "old release" ticked by two


def _record(run: Run, edit: Callable[[dict[str, Any]], None] | None = None, digest: str | None = None) -> str:
    """Give `run` a recorded code version: chain's manifest now, changed by `edit`."""
    old = copy.deepcopy(manifest(ChainFlow))
    if edit is not None:
        edit(old)
        old["digest"] = digest or uuid.uuid4().hex * 2
    CodeVersion.objects.get_or_create(digest=old["digest"], defaults={"workflow": "chain", "manifest": old})
    Run.objects.filter(pk=run.pk).update(code_version_id=old["digest"])
    return str(old["digest"])


def _older_tick(old: dict[str, Any]) -> None:
    tick = old["steps"]["tick"]
    tick["source"] = tick["source"].replace(OLD_TICK, OLD_TICK_BEFORE)
    tick["hash"] = "0" * 64


def _tick_had_a_label(old: dict[str, Any]) -> None:
    """The old Tick had a `label` field the current one dropped: stored Ticks would not load."""
    tick = old["events"]["Tick"]
    tick["properties"]["label"] = {"type": "string", "title": "Label"}
    tick["required"] = [*tick.get("required", []), "label"]


def _tick_had_a_fewer_fields(old: dict[str, Any]) -> None:
    """Compatible: the current ChainStart gained nothing, but the old one lacked `payload` (with a default)."""
    del old["events"]["ChainStart"]["properties"]["payload"]


@pytest.fixture
def ckpt() -> Checkpoint:
    """A chain checkpoint after `begin`: output Tick(n=1), so `tick` runs next."""
    run = Run.objects.create(workflow="chain", status=RunStatus.FAILED)
    state = factories.state_with({"steps": 3, "sleep": 0.0})
    c = factories.checkpoint(run, state=state)
    return Checkpoint.objects.select_related("run").get(pk=c.pk)


def _preview(c: Checkpoint) -> fork_preview.ForkPreview:
    c = Checkpoint.objects.select_related("run").get(pk=c.pk)
    return fork_preview.preview(c, ChainFlow())


# -- the preview -----------------------------------------------------------------------


def test_it_reports_the_changed_step_with_a_diff_of_its_source(ckpt: Checkpoint) -> None:
    old = _record(ckpt.run, _older_tick)
    found = _preview(ckpt)
    assert found.checkpoint_code_version == old and found.code_version == manifest(ChainFlow)["digest"]
    assert found.code_changed is True
    (changed,) = found.changed_steps or []
    assert changed.step == "tick" and changed.status == "changed"
    assert f"-{OLD_TICK_BEFORE}" in changed.diff and f"+{OLD_TICK}" in changed.diff
    assert found.compatible and found.schema_changes == []


def test_it_reports_no_change_when_the_run_ran_this_code(ckpt: Checkpoint) -> None:
    _record(ckpt.run)
    found = _preview(ckpt)
    assert found.code_changed is False and found.changed_steps == [] and found.compatible


def test_it_says_what_it_cannot_know_for_a_run_without_a_recorded_version(ckpt: Checkpoint) -> None:
    found = _preview(ckpt).as_json()
    assert found["checkpoint_code_version"] is None and found["code_changed"] is None
    assert found["changed_steps"] is None  # unknown, not "nothing changed"
    assert found["compatible"] is True  # the checkpoint decodes with the current code


def test_a_checkpoint_from_before_a_resume_under_new_code_is_compared_with_the_code_that_wrote_it(
    ckpt: Checkpoint,
) -> None:
    old = _record(ckpt.run, _older_tick)
    Run.objects.filter(pk=ckpt.run_id).update(status=RunStatus.RUNNING, worker_id="w1")
    now = _record(Run.objects.create(workflow="chain"))
    Run.objects.record_code_version("w1", [Run.objects.get(pk=ckpt.run_id)], now)
    found = _preview(ckpt)
    assert Run.objects.get(pk=ckpt.run_id).code_version_id == now
    assert found.checkpoint_code_version == old and [s.step for s in found.changed_steps or []] == ["tick"]


def test_it_lists_the_steps_that_will_run_next(ckpt: Checkpoint) -> None:
    assert _preview(ckpt).will_run == ["tick"]


def test_will_run_starts_with_the_steps_of_queued_events_and_ends_with_nothing_after_a_stop() -> None:
    queued = [{"step": "tick", "events": [{"type": "Tick", "data": {"n": 2}}]}]
    c = factories.checkpoint(
        step="tick",
        input_event={"type": "Tick", "data": {"n": 1}},
        output_event={"type": "StopEvent", "data": {"result": 1}},
        state=factories.state_with({"steps": 3, "sleep": 0.0}, queued=queued),
    )
    assert _preview(c).will_run == ["tick"]
    c2 = factories.checkpoint(
        step="tick",
        input_event={"type": "Tick", "data": {"n": 3}},
        output_event={"type": "StopEvent", "data": {"result": 3}},
        state=factories.state_with({"steps": 3, "sleep": 0.0}),
    )
    assert _preview(c2).will_run == []


def test_it_flags_an_incompatible_event_change_as_an_error(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _tick_had_a_label)
    found = _preview(ckpt)
    assert [(c.event, c.field, c.severity) for c in found.errors] == [("Tick", "label", "error")]
    assert not found.compatible


def test_it_reports_a_compatible_event_change_as_a_note(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _tick_had_a_fewer_fields)
    found = _preview(ckpt)
    assert found.errors == [] and found.compatible
    assert [(c.event, c.field, c.severity) for c in found.notes] == [("ChainStart", "payload", "info")]


# -- the refusal, in fork_run ----------------------------------------------------------------


def test_fork_run_refuses_an_incompatible_change_before_writing_anything(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _tick_had_a_label)
    runs, activities = Run.objects.count(), Activity.objects.count()
    with pytest.raises(fork_preview.IncompatibleCode) as refused:
        fork_run(ckpt.id)
    assert "Tick: field 'label' removed" in str(refused.value)
    assert [c.field for c in refused.value.changes] == ["label"]
    assert (Run.objects.count(), Activity.objects.count()) == (runs, activities)


def test_fork_run_ignores_incompatible_changes_to_events_the_checkpoint_does_not_hold(ckpt: Checkpoint) -> None:
    def old_stop_had_a_reason(old: dict[str, Any]) -> None:
        old["events"]["HumanResponseEvent"]["properties"]["reason"] = {"type": "string"}

    _record(ckpt.run, old_stop_had_a_reason)
    assert fork_run(ckpt.id).parent_checkpoint_id == ckpt.id


def test_fork_run_forks_after_a_change_of_step_code(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _older_tick)
    assert fork_run(ckpt.id).status == RunStatus.QUEUED


# -- recording by a worker ----------------------------------------------------------------------


def test_a_resume_with_other_code_keeps_the_newest_and_notes_it_in_the_activity() -> None:
    run = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="w1")
    old = _record(run, _older_tick)
    run.refresh_from_db()
    now = _record(Run.objects.create(workflow="chain"))  # chain's current manifest, recorded
    Run.objects.record_code_version("w1", [run], now)
    run.refresh_from_db()
    assert run.code_version_id == now
    (note,) = Activity.objects.filter(run=run)
    assert note.action == Activity.Action.CODE_CHANGED and note.detail == {"from": old, "to": now}


def test_the_first_record_of_a_run_is_no_activity() -> None:
    run = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="w1")
    now = _record(Run.objects.create(workflow="chain"))
    Run.objects.record_code_version("w1", [run], now)
    assert Run.objects.get(pk=run.pk).code_version_id == now
    assert not Activity.objects.filter(run=run).exists()


def test_a_worker_without_the_lease_records_nothing() -> None:
    fresh = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="w2")
    resumed = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="w2")
    old = _record(resumed, _older_tick)
    now = _record(Run.objects.create(workflow="chain"))
    Run.objects.record_code_version("w1", list(Run.objects.filter(pk__in=[fresh.pk, resumed.pk])), now)
    assert Run.objects.get(pk=fresh.pk).code_version_id is None
    assert Run.objects.get(pk=resumed.pk).code_version_id == old
    assert not Activity.objects.exists()


# -- API ------------------------------------------------------------------------------------


def _user(name: str, *perms: str) -> Any:
    user = get_user_model().objects.create_user(name, password=f"pw-{name}-123")
    for perm in perms:
        user.user_permissions.add(Permission.objects.get(codename=perm, content_type__app_label="runs"))
    return user


def _client(*perms: str) -> Client:
    client = Client()
    client.force_login(_user("u-" + "-".join(perms or ("none",)), *perms))
    return client


def test_the_api_preview_has_the_issues_shape(ckpt: Checkpoint) -> None:
    old = _record(ckpt.run, _older_tick)
    response = _client("view_run").get(f"/api/checkpoints/{ckpt.id}/fork-preview/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert {"code_version", "checkpoint_code_version", "changed_steps", "schema_changes", "will_run"} <= set(body)
    assert body["checkpoint_code_version"] == old and body["code_version"] == manifest(ChainFlow)["digest"]
    assert [s["step"] for s in body["changed_steps"]] == ["tick"]
    assert f"+{OLD_TICK}" in body["changed_steps"][0]["diff"]
    assert body["schema_changes"] == [] and body["will_run"] == ["tick"] and body["compatible"] is True


def test_the_api_preview_lists_schema_errors(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _tick_had_a_label)
    body = _client("view_run").get(f"/api/checkpoints/{ckpt.id}/fork-preview/").json()
    assert body["schema_changes"] == [
        {"event": "Tick", "change": "field 'label' removed", "severity": "error", "field": "label"}
    ]
    assert body["compatible"] is False


@pytest.mark.parametrize(
    ("perms", "status"),
    [((), 403), (("view_run",), 200)],
)
def test_the_api_preview_needs_the_view_permission(ckpt: Checkpoint, perms: tuple[str, ...], status: int) -> None:
    response = _client(*perms).get(f"/api/checkpoints/{ckpt.id}/fork-preview/")
    assert response.status_code == status
    if status == 403:
        assert response.json()["error"]["code"] == "forbidden"


def test_the_api_preview_refuses_anonymous_users(ckpt: Checkpoint) -> None:
    response = Client().get(f"/api/checkpoints/{ckpt.id}/fork-preview/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(
    ("checkpoint_id", "status", "code"),
    [
        (str(uuid.UUID(int=0)), 404, "not_found"),
        ("not-a-uuid", 422, "invalid"),
        ("0" * 31, 422, "invalid"),
        ("%00", 422, "invalid"),
        ("' OR 1=1 --", 422, "invalid"),
    ],
)
def test_the_api_preview_answers_bad_ids_with_a_4xx(checkpoint_id: str, status: int, code: str) -> None:
    response = _client("view_run").get(f"/api/checkpoints/{checkpoint_id}/fork-preview/")
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


def test_the_api_preview_of_an_unregistered_workflows_checkpoint_is_404() -> None:
    c = factories.checkpoint(workflow="retired")
    response = _client("view_run").get(f"/api/checkpoints/{c.id}/fork-preview/")
    assert response.status_code == 404 and "unknown workflow" in response.json()["error"]["message"]


def test_the_api_preview_writes_nothing(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _older_tick)
    counts = (Run.objects.count(), CodeVersion.objects.count(), Activity.objects.count())
    _client("view_run").get(f"/api/checkpoints/{ckpt.id}/fork-preview/")
    assert (Run.objects.count(), CodeVersion.objects.count(), Activity.objects.count()) == counts


def test_the_api_fork_is_409_incompatible_code_with_the_changes_and_writes_nothing(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _tick_had_a_label)
    runs = Run.objects.count()
    response = _client("view_run", "add_run").post(
        f"/api/checkpoints/{ckpt.id}/fork/", "{}", content_type="application/json"
    )
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "incompatible_code" and "label" in error["message"]
    assert error["changes"] == [
        {"event": "Tick", "change": "field 'label' removed", "severity": "error", "field": "label"}
    ]
    assert Run.objects.count() == runs


def test_the_api_fork_needs_the_add_permission(ckpt: Checkpoint) -> None:
    runs = Run.objects.count()
    response = _client("view_run").post(f"/api/checkpoints/{ckpt.id}/fork/", "{}", content_type="application/json")
    assert response.status_code == 403 and Run.objects.count() == runs


def test_the_api_shows_a_runs_code_version_and_filters_by_it(ckpt: Checkpoint) -> None:
    digest = _record(ckpt.run, _older_tick)
    Run.objects.create(workflow="chain")  # another run, no recorded version
    client = _client("view_run")
    assert client.get(f"/api/runs/{ckpt.run_id}/").json()["code_version_id"] == digest
    listed = client.get("/api/runs/", {"code_version": digest[:8]}).json()["items"]
    assert [r["id"] for r in listed] == [str(ckpt.run_id)] and listed[0]["code_version_id"] == digest
    found = client.get("/api/checkpoints/", {"code_version": digest[:8]}).json()["items"]
    assert [c["id"] for c in found] == [str(ckpt.id)]


@pytest.mark.parametrize("value", ["abc", "xyzxyzxyz", "a" * 65, "0123456789"])
def test_the_api_refuses_a_bad_or_unknown_code_version_filter(value: str) -> None:
    response = _client("view_run").get("/api/runs/", {"code_version": value})
    assert response.status_code in (400, 422) and "code_version" in response.json()["error"]["message"] + str(
        response.json()["error"].get("field")
    )


def test_an_ambiguous_code_version_prefix_says_how_many_match() -> None:
    for digit in "12":
        _record(Run.objects.create(workflow="chain"), _older_tick, digest="abcdef" + digit * 58)
    response = _client("view_run").get("/api/runs/", {"code_version": "abcdef"})
    assert response.status_code == 400 and "matches 2 code versions" in response.json()["error"]["message"]


# -- pages --------------------------------------------------------------------------------------


def test_the_edit_fork_page_shows_the_changed_step_and_its_diff(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _older_tick)
    page = _client("view_run", "add_run").get(f"/checkpoints/{ckpt.id}/edit/").content.decode()
    assert 'id="fork-preview"' in page and 'data-step="tick"' in page
    assert '<span class="d-add">+    return Tick(n=ev.n + 1)</span>' in page
    assert '<span class="d-del">-    return Tick(n=ev.n + 2)</span>' in page
    assert 'id="will-run"><span class="mono">tick</span>' in page


def test_the_edit_fork_page_escapes_the_diff(ckpt: Checkpoint) -> None:
    def hostile(old: dict[str, Any]) -> None:
        old["steps"]["tick"]["source"] = "<script>alert(1)</script>\n"
        old["steps"]["tick"]["hash"] = "1" * 64

    _record(ckpt.run, hostile)
    page = _client("view_run", "add_run").get(f"/checkpoints/{ckpt.id}/edit/").content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_edit_fork_page_shows_schema_errors_and_refuses_the_fork(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _tick_had_a_label)
    client = _client("view_run", "add_run")
    page = client.get(f"/checkpoints/{ckpt.id}/edit/").content.decode()
    assert 'id="fork-errors"' in page and "field &#x27;label&#x27; removed" in page
    runs = Run.objects.count()
    response = client.post(f"/checkpoints/{ckpt.id}/edit/", {"output_event": "", "store": ""})
    assert response.status_code == 400 and "refused" in response.content.decode()
    assert Run.objects.count() == runs


def test_the_quick_fork_of_an_incompatible_checkpoint_goes_to_the_preview(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _tick_had_a_label)
    runs = Run.objects.count()
    response = _client("view_run", "add_run").post(f"/checkpoints/{ckpt.id}/fork/", follow=True)
    assert response.redirect_chain[-1][0] == f"/checkpoints/{ckpt.id}/edit/"
    assert 'id="fork-errors"' in response.content.decode() and Run.objects.count() == runs


def test_the_checkpoint_page_shows_the_preview(ckpt: Checkpoint) -> None:
    page = _client("view_run").get(f"/checkpoints/{ckpt.id}/").content.decode()
    assert 'id="fork-preview"' in page and "not recorded (the run predates code versions)" in page


def test_the_run_page_links_its_code_version_to_the_runs_of_that_code(ckpt: Checkpoint) -> None:
    digest = _record(ckpt.run, _older_tick)
    page = _client("view_run").get(f"/runs/{ckpt.run_id}/").content.decode()
    assert f'href="/?code_version={digest[:12]}"' in page


def test_the_runs_list_and_explorer_filter_by_code_version(ckpt: Checkpoint) -> None:
    digest = _record(ckpt.run, _older_tick)
    other = Run.objects.create(workflow="chain")
    client = _client("view_run")
    listed = client.get("/", {"code_version": digest[:6]}).content.decode()
    assert f"run-{ckpt.run_id}" in listed and f"run-{other.id}" not in listed
    explorer = client.get("/checkpoints/", {"code_version": digest}).content.decode()
    assert f"checkpoint {ckpt.id}" in explorer
    refused = client.get("/checkpoints/", {"code_version": "nothex"})
    assert refused.status_code == 400 and "code_version must be" in refused.content.decode()


# -- CLI ----------------------------------------------------------------------------------------


def test_the_cli_preview_prints_the_apis_json_and_writes_nothing(ckpt: Checkpoint, capsys) -> None:
    _record(ckpt.run, _older_tick)
    runs = Run.objects.count()
    call_command("fork", str(ckpt.id)[:8], "--preview", "--json")
    body = json.loads(capsys.readouterr().out)
    assert [s["step"] for s in body["changed_steps"]] == ["tick"] and body["will_run"] == ["tick"]
    assert Run.objects.count() == runs


def test_the_cli_preview_prints_the_diff_for_people(ckpt: Checkpoint, capsys) -> None:
    _record(ckpt.run, _older_tick)
    call_command("fork", str(ckpt.id), "--preview")
    out = capsys.readouterr().out
    assert "changed steps: tick" in out and f"+{OLD_TICK}" in out and "will run next:                tick" in out


def test_the_cli_fork_refuses_an_incompatible_change(ckpt: Checkpoint) -> None:
    _record(ckpt.run, _tick_had_a_label)
    runs = Run.objects.count()
    with pytest.raises(CommandError, match="Tick: field 'label' removed"):
        call_command("fork", str(ckpt.id))
    assert Run.objects.count() == runs


def test_the_cli_json_flag_needs_preview(ckpt: Checkpoint) -> None:
    runs = Run.objects.count()
    with pytest.raises(CommandError, match="--json goes with --preview"):
        call_command("fork", str(ckpt.id), "--json")
    assert Run.objects.count() == runs


def test_the_run_page_says_when_a_worker_resumed_it_with_other_code() -> None:
    run = Run.objects.create(workflow="chain", status=RunStatus.RUNNING, worker_id="w1")
    old = _record(run, _older_tick)
    now = _record(Run.objects.create(workflow="chain"))
    Run.objects.record_code_version("w1", [Run.objects.get(pk=run.pk)], now)
    page = _client("view_run").get(f"/runs/{run.id}/").content.decode()
    assert (
        f'<strong>a worker</strong> resumed it with other code: <span class="mono">{old[:12]}</span>'
        f' → <span class="mono">{now[:12]}</span>'
    ) in page


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.text(max_size=80))
def test_the_api_preview_never_answers_a_hostile_id_with_a_5xx(raw: str) -> None:
    client = _client("view_run") if not get_user_model().objects.exists() else _signed_in()
    response = client.get(f"/api/checkpoints/{quote(raw, safe='')}/fork-preview/")
    assert response.status_code in (404, 422), (raw, response.status_code)


def _signed_in() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.get())
    return client
