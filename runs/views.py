"""Pages. Each view looks up, calls one model function, renders or redirects."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from wfdash import telemetry

from . import access, compare, diagram, filters, fork_preview, inputs, lineage, live, registry, search, timeline
from .forms import EditForkForm, RespondForm, StartRunForm, describe_start_event, workflow_doc
from .models import Checkpoint, Run, RunStatus, fork_run, respond, start_run
from .webhooks import DELIVERIES_SHOWN, recent_deliveries


def _get_run_for_user(request: HttpRequest, run_id: Any) -> Run:
    """One run, for a view that already passed `access.requires`: 404 when it does not exist."""
    if not request.user.is_authenticated:
        raise Http404
    try:
        qs = Run.objects.select_related("parent_checkpoint", "parent_checkpoint__run")
        # Pages never show the fork point's events and state, nor the parent run's values.
        qs = qs.defer(
            *(f"parent_checkpoint__{f}" for f in timeline.HEAVY),
            *(f"parent_checkpoint__run__{f}" for f in timeline.RUN_HEAVY),
        )
        return qs.get(pk=uuid.UUID(str(run_id)))
    except (Run.DoesNotExist, ValueError):
        raise Http404("no such run") from None


def checkpoint_for(request: HttpRequest, checkpoint_id: Any) -> Checkpoint:
    """One checkpoint, for a page that shows it (its events, store keys): the user needs
    access.VIEW as well as the page's own permission (`access.requires`, e.g. ADD to fork);
    403 without it, 404 when it does not exist."""
    access.check(request.user, access.VIEW)
    try:
        qs = Checkpoint.objects.select_related("run").defer(*(f"run__{f}" for f in timeline.RUN_HEAVY))
        c = qs.get(pk=uuid.UUID(str(checkpoint_id)))
    except (Checkpoint.DoesNotExist, ValueError):
        raise Http404("no such checkpoint") from None
    _get_run_for_user(request, c.run_id)
    return c


def _run_messages(runs: list[Run]) -> list[live.RunMessage]:
    return [live.run_message(r, str(r.parent_checkpoint.run_id) if r.parent_checkpoint else None) for r in runs]


@access.requires(access.VIEW)
@require_GET
def runs_list(request: HttpRequest) -> HttpResponse:
    context: dict[str, Any] = {"workflows": registry.names(), "statuses": RunStatus.values, "params": request.GET}
    try:
        qs, active = filters.run_filters(request.GET)
        page = filters.paginate(qs, request.GET.get("before"))
    except filters.FilterError as exc:
        context.update(error=str(exc), runs=[], active={}, next_cursor=None)
        if request.htmx:  # type: ignore[attr-defined]
            return render(request, "runs/_run_table.html", context)
        return render(request, "runs/list.html", context, status=400)
    context.update(runs=_run_messages(page.rows), active=active, next_cursor=page.next_cursor)
    template = "runs/_run_table.html" if request.htmx else "runs/list.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@access.requires(access.VIEW)
@require_GET
def run_detail(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """The run's facts and outcome, its summary (steps, Gantt) and one window of checkpoints;
    `?fragment=outcome|summary` renders one part for the live page."""
    run = _get_run_for_user(request, run_id)
    fragment = request.GET.get("fragment")
    if fragment == "summary":
        return render(request, "runs/_summary.html", {"run": run, "summary": timeline.summary(run)})
    parent_run_id = str(run.parent_checkpoint.run_id) if run.parent_checkpoint else None
    context: dict[str, Any] = {
        "run": run,
        "r": live.run_message(run, parent_run_id),
        "forks": timeline.forks(run),
        "activities": run.recent_activities(),
        "respond_form": RespondForm() if run.status == RunStatus.WAITING else None,
        "waiting_prompt": _waiting_prompt(run) if run.status == RunStatus.WAITING else None,
    }
    if fragment == "outcome":
        return render(request, "runs/_outcome.html", {**context, "summary": timeline.summary(run)})
    # The summary first: a checkpoint committed between the two reads then shows in the
    # window, and the live cursor (the larger of both) skips nothing.
    summary = timeline.summary(run)
    try:
        window = timeline.window(run, request.GET)
    except filters.FilterError as exc:
        messages.error(request, str(exc))
        return redirect("run-detail", run_id=run.id)
    newest_shown = window.first_seq if window.latest and not window.step else None
    context.update(
        summary=summary,
        window=window,
        checkpoints=window.checkpoints,
        last_seq=max(summary.last_seq, newest_shown or 0),
        window_size=timeline.WINDOW,
        inherited_sections=timeline.inherited(run) if window.older is None else [],
        graph=diagram.run_graph(run, [s.step for s in summary.steps]),
        lineage=lineage.lineage(run),
        trace=telemetry.trace_link(run.id, settings.WFDASH_TRACE_URL),
    )
    if access.allows(request.user, access.WEBHOOK_VIEW):
        context.update(webhook_deliveries=recent_deliveries(run), webhook_deliveries_shown=DELIVERIES_SHOWN)
    return render(request, "runs/detail.html", context)


def _waiting_prompt(run: Run) -> str:
    asked = Checkpoint.objects.filter(run=run, output_event_type="InputRequiredEvent").defer("input_event", "state")
    last = asked.order_by("-seq").first()
    if last is None or not isinstance(last.output_event, dict):
        return ""
    return str(last.output_event.get("data", {}).get("prefix", ""))


@access.requires(access.CHANGE)
@require_POST
def run_cancel(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    if run.request_cancel(request.user):
        messages.info(request, "Cancel requested." if run.status == RunStatus.RUNNING else "Run cancelled.")
    else:
        messages.warning(request, f"The run had already {run.status}.")
    return redirect("run-detail", run_id=run.id)


@access.requires(access.CHANGE)
@require_POST
def run_respond(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = _get_run_for_user(request, run_id)
    form = RespondForm(request.POST)
    if not form.is_valid():
        messages.error(request, "An answer is required.")
    elif respond(run, {"response": form.cleaned_data["response"]}, user=request.user):
        messages.info(request, "Answer sent; the run continues.")
    else:
        messages.warning(request, f"The run is {run.status}, not waiting for an answer.")
    return redirect("run-detail", run_id=run.id)


@access.requires(access.ADD)
@require_http_methods(["GET", "POST"])
def run_new(request: HttpRequest) -> HttpResponse:
    """The start form of one workflow, explaining itself: docstring, fields, an example input."""
    name = request.GET.get("workflow") or request.POST.get("workflow") or ""
    if not name:
        return render(request, "runs/new.html", {"workflows": registry.names(), "form": None})
    try:
        workflow = inputs.workflow_named(name)
    except inputs.InputError as exc:
        return render(request, "runs/new.html", {"workflows": registry.names(), "error": str(exc)}, status=404)
    form = StartRunForm(workflow, request.POST or None)
    fields, example = describe_start_event(workflow)
    context = {
        "workflows": registry.names(),
        "workflow": name,
        "form": form,
        "doc": workflow_doc(workflow),
        "start_event": workflow.start_event_class.__name__,
        "start_fields": fields,
        "example": example,
        "unavailable": inputs.unavailable_reason(workflow),
    }
    if request.method == "POST" and form.is_valid():
        fields_in = form.start_fields()
        if not form.errors:
            try:
                run = start_run(name, fields_in, user=request.user)
            except inputs.InputError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("run-detail", run_id=run.id)
    return render(request, "runs/new.html", context, status=400 if request.method == "POST" else 200)


@access.requires(access.VIEW)
@require_GET
def run_compare(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """A fork beside its parent; any other run gets a form to choose the run to compare with
    (`?other=` an id or its first characters)."""
    run = _get_run_for_user(request, run_id)
    other = request.GET.get("other", "").strip()
    if other:
        try:
            found = compare.find_run(run, other)
        except compare.NotComparable as exc:
            return _compare_form(request, run, str(exc), status=404)
        return redirect("run-compare-with", run_id=run.id, other_id=found.id)
    if run.parent_checkpoint is None:
        return _compare_form(request, run, "")
    return _compare(request, run.parent_checkpoint.run, run)


@access.requires(access.VIEW)
@require_GET
def run_compare_with(request: HttpRequest, run_id: uuid.UUID, other_id: uuid.UUID) -> HttpResponse:
    left, right = _get_run_for_user(request, run_id), _get_run_for_user(request, other_id)
    if left.workflow != right.workflow:
        message = f"Run {str(right.id)[:8]} is a {right.workflow} run: compare runs of one workflow ({left.workflow})."
        return _compare_form(request, left, message, status=400)
    if left.pk == right.pk:
        return _compare_form(request, left, "Choose another run: a run is identical to itself.", status=400)
    return _compare(request, left, right)


def _compare(request: HttpRequest, left: Run, right: Run) -> HttpResponse:
    try:
        page = compare.compare_page(left, right, request.GET)
    except filters.FilterError as exc:
        messages.error(request, str(exc))
        return redirect(request.path)
    return render(request, "runs/compare.html", {"left": left, "right": right, "page": page})


def _compare_form(request: HttpRequest, run: Run, error: str, status: int = 200) -> HttpResponse:
    context = {"run": run, "error": error, "others": compare.recent_others(run), "other": request.GET.get("other", "")}
    return render(request, "runs/compare_choose.html", context, status=status)


@access.requires(access.VIEW)
@require_GET
def checkpoints_explorer(request: HttpRequest) -> HttpResponse:
    """One dense row per checkpoint, with counts per step and event type for the filter."""
    context: dict[str, Any] = {"params": request.GET, "suggest": filters.suggestions(), "cap": filters.COUNT_CAP}
    try:
        qs, active = filters.checkpoint_filters(request.GET)
        page = filters.paginate(qs, request.GET.get("before"))
        counts = filters.checkpoint_counts(qs)
    except filters.FilterError as exc:
        context.update(error=str(exc), checkpoints=[], active={}, next_cursor=None, counts=None)
        # htmx swaps only 2xx answers: give it the results box with the error in place.
        if request.htmx:  # type: ignore[attr-defined]
            return render(request, "runs/_explorer_results.html", context)
        return render(request, "runs/explorer.html", context, status=400)
    checkpoints: list[dict[str, Any]] = [dict(live.checkpoint_message(c)) for c in page.rows]
    if found := search.parse(active.get("q")):
        # Where the words matched, for this page's rows only.
        where = search.matches_for(page.rows, found)
        for row, c in zip(checkpoints, page.rows, strict=True):
            row["matches"] = where.get(c.pk, [])
    context.update(
        checkpoints=checkpoints,
        active=active,
        next_cursor=page.next_cursor,
        counts=counts,
    )
    template = "runs/_explorer_results.html" if request.htmx else "runs/explorer.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@access.requires(access.VIEW)
@require_GET
def checkpoint_detail(request: HttpRequest, checkpoint_id: uuid.UUID) -> HttpResponse:
    c = checkpoint_for(request, checkpoint_id)
    try:
        state = c.context_state()
    except Exception as exc:  # a damaged row is still shown, with what is wrong
        state = {"error": str(exc), "stored": c.state}
    context: dict[str, Any] = {"c": c, "m": live.checkpoint_message(c), "state": state}
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "runs/_checkpoint_detail.html", context)
    return render(request, "runs/checkpoint.html", {**context, "preview": _fork_preview(c)})


def _fork_preview(c: Checkpoint) -> fork_preview.ForkPreview | None:
    """What a fork of `c` would run with the code now; None when its workflow is not registered."""
    try:
        return fork_preview.preview(c, registry.get_workflow(c.workflow))
    except registry.UnknownWorkflow:
        return None


@access.requires(access.ADD)
@require_POST
def checkpoint_fork(request: HttpRequest, checkpoint_id: uuid.UUID) -> HttpResponse:
    c = checkpoint_for(request, checkpoint_id)
    try:
        run = fork_run(c.id, user=request.user)
    except fork_preview.IncompatibleCode as exc:
        # The edit-and-fork page shows the changes that refused it.
        messages.error(request, str(exc))
        return redirect("checkpoint-edit-fork", checkpoint_id=c.id)
    except inputs.InputError as exc:
        messages.error(request, str(exc))
        return redirect("run-detail", run_id=c.run_id)
    return redirect("run-detail", run_id=run.id)


@access.requires(access.ADD)
@require_http_methods(["GET", "POST"])
def checkpoint_edit_fork(request: HttpRequest, checkpoint_id: uuid.UUID) -> HttpResponse:
    c = checkpoint_for(request, checkpoint_id)
    schema = None
    try:
        workflow = registry.get_workflow(c.workflow)
        if c.output_event_type in workflow.event_registry:
            schema = workflow.event_registry.get(c.output_event_type).model_json_schema()
    except registry.UnknownWorkflow:
        pass
    if request.method == "POST":
        form = EditForkForm(request.POST)
        if form.is_valid():
            try:
                run = fork_run(
                    c.id,
                    output_event=form.cleaned_data["output_event"],
                    store=form.cleaned_data["store"],
                    user=request.user,
                )
            except inputs.InputError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("run-detail", run_id=run.id)
    else:
        data = c.output_event.get("data", {}) if isinstance(c.output_event, dict) else {}
        form = EditForkForm(initial={"output_event": _pretty(data), "store": ""})
    try:
        store = c.context_state().get("store", {})
    except Exception:
        store = {}
    context = {"c": c, "form": form, "schema": schema, "store": store, "preview": _fork_preview(c)}
    return render(request, "runs/edit_fork.html", context, status=400 if form.errors else 200)


def _pretty(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Reachability of the database and the channel layer, for load balancers; open to anyone,
    it reveals nothing but "ok"/"error" per component."""
    import asyncio
    import json

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.db import connection

    status: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        status["database"] = "ok"
    except Exception:
        status["database"] = "error"
    try:
        layer = get_channel_layer()

        async def ping() -> None:
            channel = await layer.new_channel()
            await asyncio.wait_for(layer.send(channel, {"type": "healthz"}), 2)
            await asyncio.wait_for(layer.receive(channel), 2)

        async_to_sync(ping)()
        status["channel_layer"] = "ok"
    except Exception:
        status["channel_layer"] = "error"
    healthy = all(v == "ok" for v in status.values())
    return HttpResponse(
        json.dumps({"status": "ok" if healthy else "error", **status}),
        content_type="application/json",
        status=200 if healthy else 503,
    )
