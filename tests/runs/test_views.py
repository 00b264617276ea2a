"""Pages, for a user with the runs permissions: sign-in, 404s, CSRF on every POST, filter errors, forking."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from runs.models import Checkpoint, Run, RunStatus, start_run
from tests.runs import factories

pytestmark = pytest.mark.django_db

MISSING = uuid.UUID(int=0)


@pytest.fixture
def user():
    """A user with the runs permissions (view, add, change); test_access.py covers users without."""
    alice = get_user_model().objects.create_user("alice", password="pw-alice-123")
    alice.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="runs", codename__in=["view_run", "add_run", "change_run"])
    )
    return alice


@pytest.fixture
def client_in(client: Client, user) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def finished_run() -> Run:
    """A chain run with three checkpoints, written as a worker would."""
    run = start_run("chain", {"steps": 2})
    run.status = RunStatus.SUCCEEDED
    run.result = {"ticks": 2}
    run.checkpoint_count = 3
    run.save()
    state = {
        "version": 1,
        "store": {"steps": {"v": 2}, "sleep": {"v": 0.0}},
        "queued": [],
        "in_flight": [],
        "collect": [],
        "waiters": [],
        "awaiting_input": False,
    }
    events = [
        (
            "begin",
            {"type": "ChainStart", "data": {"steps": 2, "sleep": 0.0, "payload": ""}},
            {"type": "Tick", "data": {"n": 1}},
        ),
        ("tick", {"type": "Tick", "data": {"n": 1}}, {"type": "Tick", "data": {"n": 2}}),
        ("tick", {"type": "Tick", "data": {"n": 2}}, {"type": "StopEvent", "data": {"result": {"ticks": 2}}}),
    ]
    for seq, (step, inp, out) in enumerate(events, start=1):
        Checkpoint.objects.create(
            run=run,
            workflow="chain",
            seq=seq,
            last_completed_step=step,
            input_event_type=inp["type"],
            output_event_type=out["type"],
            input_event=inp,
            output_event=out,
            state=state,
            snapshot_seq=seq,
        )
    return run


def _pages(run: Run) -> list[str]:
    c = run.checkpoints.first()
    return [
        "/",
        f"/runs/{run.id}/",
        "/runs/new/",
        "/runs/new/?workflow=chain",
        "/checkpoints/",
        f"/checkpoints/{c.id}/",
        f"/checkpoints/{c.id}/edit/",
    ]


def test_it_redirects_anonymous_users_to_login(client: Client, finished_run: Run) -> None:
    for url in _pages(finished_run):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/accounts/login/"), url


def test_it_renders_every_page_for_a_signed_in_user(client_in: Client, finished_run: Run) -> None:
    for url in _pages(finished_run):
        assert client_in.get(url).status_code == 200, url


def test_it_404s_unknown_runs_and_checkpoints(client_in: Client) -> None:
    for url in (f"/runs/{MISSING}/", f"/checkpoints/{MISSING}/", f"/checkpoints/{MISSING}/edit/", "/runs/nope/"):
        assert client_in.get(url).status_code == 404, url
    assert client_in.post(f"/checkpoints/{MISSING}/fork/").status_code == 404
    assert client_in.post(f"/runs/{MISSING}/cancel/").status_code == 404


def test_it_rejects_get_on_post_only_endpoints(client_in: Client, finished_run: Run) -> None:
    c = finished_run.checkpoints.first()
    for url in (f"/checkpoints/{c.id}/fork/", f"/runs/{finished_run.id}/cancel/", f"/runs/{finished_run.id}/respond/"):
        assert client_in.get(url).status_code == 405, url


def test_it_enforces_csrf_on_every_post(user, finished_run: Run) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    c = finished_run.checkpoints.first()
    before = Run.objects.count()
    for url, data in [
        (f"/checkpoints/{c.id}/fork/", {}),
        (f"/checkpoints/{c.id}/edit/", {"output_event": '{"n": 3}'}),
        ("/runs/new/?workflow=chain", {"workflow": "chain", "steps": 2, "sleep": 0}),
        (f"/runs/{finished_run.id}/cancel/", {}),
        (f"/runs/{finished_run.id}/respond/", {"response": "yes"}),
        ("/accounts/logout/", {}),
    ]:
        assert strict.post(url, data).status_code == 403, url
    assert Run.objects.count() == before


def test_it_lists_runs_with_filters_and_keyset_pages(client_in: Client) -> None:
    runs = [start_run("chain", {"steps": 1}) for _ in range(55)]
    start_run("wordcount", {})
    page1 = client_in.get("/", {"workflow": "chain"})
    assert page1.status_code == 200
    ids = [r["run_id"] for r in page1.context["runs"]]
    assert len(ids) == 50 and all(r["workflow"] == "chain" for r in page1.context["runs"])
    page2 = client_in.get("/", {"workflow": "chain", "before": page1.context["next_cursor"]})
    ids2 = [r["run_id"] for r in page2.context["runs"]]
    assert len(ids2) == 5 and not set(ids) & set(ids2)
    assert set(ids) | set(ids2) == {str(r.id) for r in runs}
    assert client_in.get("/", {"status": "queued", "since": "1h"}).status_code == 200


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "exploded"}, "status must be one of"),
        ({"since": "yesterday-ish"}, "since must be like"),
        ({"workflow": "<script>"}, "workflow must be a name"),
        ({"before": "garbage"}, "cursor is malformed"),
        ({"parent": "nope"}, "parent must be a UUID"),
    ],
)
def test_it_explains_bad_run_filters_without_a_500(client_in: Client, params, message) -> None:
    response = client_in.get("/", params)
    assert response.status_code == 400
    assert message in response.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"run": "not-a-uuid"}, "run must be a UUID"),
        ({"step": "a b"}, "step must be a name"),
        ({"before": "x_y"}, "cursor"),
    ],
)
def test_it_explains_bad_explorer_filters_without_a_500(client_in: Client, params, message) -> None:
    response = client_in.get("/checkpoints/", params)
    assert response.status_code == 400 and message in response.content.decode()


def test_it_filters_checkpoints_with_and(client_in: Client, finished_run: Run) -> None:
    response = client_in.get("/checkpoints/", {"workflow": "chain", "step": "tick", "output_event_type": "StopEvent"})
    assert [c["seq"] for c in response.context["checkpoints"]] == [3]
    partial = client_in.get("/checkpoints/", {"step": "tick"}, HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and b"<html" not in partial.content and b"explorer-results" in partial.content


def test_it_forks_from_a_checkpoint_and_redirects_to_the_new_run(client_in: Client, finished_run: Run) -> None:
    c = finished_run.checkpoints.get(seq=2)
    response = client_in.post(f"/checkpoints/{c.id}/fork/")
    child = Run.objects.exclude(pk=finished_run.pk).get()
    assert response.status_code == 302 and response.url == f"/runs/{child.id}/"
    assert child.parent_checkpoint_id == c.id and child.status == RunStatus.QUEUED
    page = client_in.get(f"/runs/{child.id}/")
    assert b"Forked from" in page.content and b"Inherited from" in page.content
    assert client_in.get(f"/runs/{child.id}/compare/").status_code == 200


def test_it_refuses_an_invalid_edit_and_creates_nothing(client_in: Client, finished_run: Run) -> None:
    c = finished_run.checkpoints.get(seq=2)
    for data, message in [
        ({"output_event": '{"n": "two"}'}, "invalid Tick"),
        ({"output_event": "{broken"}, "not valid JSON"),
        ({"output_event": "[1]"}, "must be a JSON object"),
        ({"output_event": '{"type": "os.system", "data": {}}'}, "unknown event type"),
        ({"output_event": '{"n": 3}', "store": '{"k": 1} trailing'}, "not valid JSON"),
    ]:
        response = client_in.post(f"/checkpoints/{c.id}/edit/", data)
        assert response.status_code == 400
        assert message in response.content.decode(), data
    assert Run.objects.count() == 1
    ok = client_in.post(f"/checkpoints/{c.id}/edit/", {"output_event": '{"n": 1}', "store": '{"steps": 5}'})
    child = Run.objects.exclude(pk=finished_run.pk).get()
    assert ok.status_code == 302
    assert child.fork_edits == {"output_event": {"type": "Tick", "data": {"n": 1}}, "store": {"steps": 5}}


def test_it_starts_a_run_from_the_generated_form(client_in: Client, user) -> None:
    response = client_in.post("/runs/new/?workflow=chain", {"workflow": "chain", "steps": 4, "sleep": 0})
    run = Run.objects.get()
    assert response.status_code == 302 and response.url == f"/runs/{run.id}/"
    assert run.start_event == {"type": "ChainStart", "data": {"steps": 4, "sleep": 0.0, "payload": ""}}
    assert run.created_by == user
    bad = client_in.post("/runs/new/?workflow=chain", {"workflow": "chain", "steps": 0})
    assert bad.status_code == 400 and "greater than or equal to 1" in bad.content.decode()
    assert client_in.get("/runs/new/?workflow=nope").status_code == 404
    free = client_in.post("/runs/new/?workflow=wordcount", {"workflow": "wordcount", "input": '{"text": "a b"}'})
    assert free.status_code == 302
    # The typed start event fills its defaults.
    assert Run.objects.filter(workflow="wordcount").get().start_event["data"] == {"text": "a b", "chunks": 4}
    assert client_in.post("/runs/new/?workflow=wordcount", {"input": "[]"}).status_code == 400
    assert Run.objects.count() == 2


def test_it_says_how_to_configure_an_llm_on_the_joke_form(client_in: Client, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    page = client_in.get("/runs/new/?workflow=joke").content.decode()
    assert "OPENAI_BASE_URL" in page and "WFDASH_LLM_MODEL" in page


def test_it_cancels_a_queued_run_and_answers_a_waiting_one(client_in: Client) -> None:
    run = start_run("chain", {"steps": 1})
    assert client_in.post(f"/runs/{run.id}/cancel/").status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    waiting = start_run("approval", {})
    Run.objects.filter(pk=waiting.pk).update(status=RunStatus.WAITING)
    assert client_in.post(f"/runs/{waiting.id}/respond/", {"response": "yes"}).status_code == 302
    waiting.refresh_from_db()
    assert waiting.status == RunStatus.QUEUED
    assert waiting.pending_input == {"type": "HumanResponseEvent", "data": {"response": "yes"}}


def test_it_shows_event_payloads_as_text(client_in: Client, finished_run: Run) -> None:
    c = finished_run.checkpoints.get(seq=1)
    c.output_event = {"type": "Tick", "data": {"n": 1, "note": "<script>alert(1)</script>"}}
    c.save()
    body = client_in.get(f"/checkpoints/{c.id}/").content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


# -- the run page's window: bounded whatever the run's length ---------------------------

STATE = factories.EMPTY_STATE


def _long_run(n: int, steps: tuple[str, ...] = ("begin", "tick"), parent=None, start: int = 1) -> Run:
    """A finished chain run of `n` checkpoints, bulk-inserted: step `steps[0]` first, then the others in turn."""
    from datetime import timedelta

    from django.utils import timezone

    run = Run.objects.create(
        workflow="chain", status=RunStatus.SUCCEEDED, checkpoint_count=n, parent_checkpoint=parent, result={"ticks": n}
    )
    t0 = timezone.now() - timedelta(hours=1)
    rows = []
    for seq in range(start, start + n):
        step = steps[0] if seq == start else steps[1 + (seq - start) % (len(steps) - 1)]
        rows.append(
            Checkpoint(
                run=run,
                workflow="chain",
                seq=seq,
                snapshot_seq=seq,
                last_completed_step=step,
                input_event_type="Tick",
                output_event_type="Tick",
                input_event={"type": "Tick", "data": {"n": seq}},
                output_event={"type": "Tick", "data": {"n": seq + 1}},
                state=STATE,
                created_at=t0 + timedelta(milliseconds=10 * seq),
                duration_ms=4.0,
            )
        )
    Checkpoint.objects.bulk_create(rows, batch_size=2000)
    return run


def _seqs(response) -> list[int]:
    return [c["seq"] for c in response.context["checkpoints"]]


def test_it_shows_the_newest_window_newest_first(client_in: Client) -> None:
    run = _long_run(250)
    page = client_in.get(f"/runs/{run.id}/")
    assert _seqs(page) == list(range(250, 150, -1))
    html = page.content.decode()
    assert 'href="?before_seq=151"' in html and 'id="newer-link"' not in html
    assert 'data-latest="1"' in html and 'data-last-seq="250"' in html


def test_it_pages_to_older_checkpoints_by_seq(client_in: Client) -> None:
    run = _long_run(250)
    page = client_in.get(f"/runs/{run.id}/", {"before_seq": 151})
    assert _seqs(page) == list(range(150, 50, -1))
    html = page.content.decode()
    assert 'href="?before_seq=51"' in html and 'href="?after_seq=150"' in html
    assert 'data-latest="0"' in html


def test_it_pages_back_to_newer_checkpoints_and_fills_the_newest_window(client_in: Client) -> None:
    run = _long_run(250)
    oldest = client_in.get(f"/runs/{run.id}/", {"before_seq": 51})
    assert _seqs(oldest) == list(range(50, 0, -1))
    assert 'id="older-link" hidden' in oldest.content.decode()
    newest = client_in.get(f"/runs/{run.id}/", {"after_seq": 200})
    assert _seqs(newest) == list(range(250, 150, -1))  # 50 newer ones, topped up with older
    assert 'data-latest="1"' in newest.content.decode()


def test_it_jumps_to_a_seq_and_highlights_it(client_in: Client) -> None:
    run = _long_run(250)
    page = client_in.get(f"/runs/{run.id}/", {"seq": 120})
    assert _seqs(page) == list(range(170, 70, -1))
    assert 'class="ckpt target" id="ckpt-120"' in page.content.decode()


def test_it_filters_the_window_by_step(client_in: Client) -> None:
    run = _long_run(250, steps=("begin", "tick", "tock"))
    page = client_in.get(f"/runs/{run.id}/", {"step": "tock"})
    rows = page.context["checkpoints"]
    assert len(rows) == 100 and {c["last_completed_step"] for c in rows} == {"tock"}
    assert rows[0]["seq"] == 250 and 'href="?step=tock&amp;before_seq=52"' in page.content.decode()


def test_it_explains_a_malformed_window_parameter(client_in: Client) -> None:
    run = _long_run(3)
    response = client_in.get(f"/runs/{run.id}/", {"before_seq": "ten"}, follow=True)
    assert response.redirect_chain == [(f"/runs/{run.id}/", 302)]
    assert "before_seq must be a checkpoint number" in response.content.decode()


def test_it_counts_checkpoints_per_step_for_the_whole_run(client_in: Client) -> None:
    run = _long_run(250, steps=("begin", "tick", "tock"))
    page = client_in.get(f"/runs/{run.id}/")
    counts = [(s.step, s.count, s.first_seq, s.last_seq) for s in page.context["summary"].steps]
    assert counts == [("begin", 1, 1, 1), ("tock", 125, 2, 250), ("tick", 124, 3, 249)]
    assert f'href="/runs/{run.id}/?step=tick"' in page.content.decode()


def test_it_bins_a_long_run_into_at_most_200_bars_per_step(client_in: Client) -> None:
    run = _long_run(1000, steps=("begin", "tick", "tock"))
    gantt = client_in.get(f"/runs/{run.id}/").context["summary"].gantt
    assert gantt["lanes"] == ["begin", "tock", "tick"]
    per_lane = [[b for b in gantt["bars"] if b[0] == lane] for lane in range(3)]
    assert [len(bars) for bars in per_lane] == [1, 125, 125]  # bins of 8 seqs: 4 tocks and 4 ticks each
    assert [sum(b[3] for b in bars) for bars in per_lane] == [1, 500, 499]
    first_tock = per_lane[1][0]  # seqs 2, 4, 6, 8 (bin 0 is seqs 1-8)
    assert first_tock[3:6] == [4, 2, 8]
    assert first_tock[2] - first_tock[1] == 6 * 10 + 4.0  # from #2's start to #8's end


def test_it_draws_one_bar_per_checkpoint_of_a_short_run(client_in: Client) -> None:
    run = _long_run(7)
    gantt = client_in.get(f"/runs/{run.id}/").context["summary"].gantt
    assert [(b[0], b[3], b[4]) for b in gantt["bars"]] == [(0, 1, 1)] + [(1, 1, seq) for seq in range(2, 8)]
    assert gantt["bars"][1][2] - gantt["bars"][1][1] == 4.0  # a bar lasts its step's duration


def test_it_extends_the_cached_summary_with_later_checkpoints(client_in: Client) -> None:
    from django.core.cache import cache

    from runs import timeline

    run = _long_run(300)
    timeline.summary(run)  # cached at seq 300, bins of 2
    extra = _long_run(300, start=301)
    Checkpoint.objects.filter(run=extra).update(run=run)
    grown = timeline.summary(run)
    cache.clear()
    assert grown == timeline.summary(run)
    assert [s.count for s in grown.steps] == [2, 598] and len(grown.gantt["bars"]) <= 2 * 200


def test_it_keeps_a_long_run_page_small(client_in: Client) -> None:
    run = _long_run(5000)
    page = client_in.get(f"/runs/{run.id}/")
    assert len(page.content) < 300_000
    assert page.content.decode().count('id="ckpt-') == 100


def test_it_renders_the_outcome_fragment_without_checkpoints(client_in: Client) -> None:
    run = _long_run(500)
    fragment = client_in.get(f"/runs/{run.id}/", {"fragment": "outcome"}, HTTP_HX_REQUEST="true")
    html = fragment.content.decode()
    assert 'id="outcome"' in html and "ticks" in html and 'id="ckpt-' not in html and "<html" not in html


def test_it_renders_the_summary_fragment_for_live_refreshes(client_in: Client) -> None:
    run = _long_run(500)
    html = client_in.get(f"/runs/{run.id}/", {"fragment": "summary"}).content.decode()
    assert 'id="gantt-data"' in html and 'data-step="tick"' in html and 'id="ckpt-' not in html


def test_it_shows_only_the_last_checkpoints_inherited_from_each_ancestor(client_in: Client) -> None:
    grandparent = _long_run(50)
    parent = _long_run(30, parent=grandparent.checkpoints.get(seq=40))
    child = _long_run(5, parent=parent.checkpoints.get(seq=20))
    page = client_in.get(f"/runs/{child.id}/")
    sections = page.context["inherited_sections"]
    assert [(s.run.id, [c["seq"] for c in s.checkpoints]) for s in sections] == [
        (parent.id, [20, 19, 18]),
        (grandparent.id, [40, 39, 38]),
    ]
    html = page.content.decode()
    assert f'href="/runs/{grandparent.id}/?seq=40">#1–#37 in that run</a>' in html


def test_it_shows_inherited_checkpoints_only_below_the_oldest_window(client_in: Client) -> None:
    parent = _long_run(10)
    child = _long_run(150, parent=parent.checkpoints.get(seq=5))
    assert client_in.get(f"/runs/{child.id}/").context["inherited_sections"] == []
    assert len(client_in.get(f"/runs/{child.id}/", {"before_seq": 51}).context["inherited_sections"]) == 1


def test_it_pages_the_compare_view(client_in: Client) -> None:
    parent = _long_run(130)
    child = _long_run(120, steps=("tick", "tick"), parent=parent.checkpoints.get(seq=10))
    first = client_in.get(f"/runs/{child.id}/compare/")
    pairs = [(p.left.seq, p.right.seq) for p in first.context["page"].pairs]
    assert pairs == [(10 + k, k) for k in range(1, 51)]
    assert 'href="?after_seq=50"' in first.content.decode() and "earlier-link" not in first.content.decode()
    later = client_in.get(f"/runs/{child.id}/compare/", {"after_seq": 100})
    pairs = [(p.left and p.left.seq, p.right.seq) for p in later.context["page"].pairs]
    assert pairs == [(110 + k, 100 + k) for k in range(1, 21)]  # the parent's last is #130
    assert 'href="?before_seq=101"' in later.content.decode() and "later-link" not in later.content.decode()
