"""The Django admin for runs, checkpoints and blobs.

Everything is read-only: rows change only through the model functions (a run is
cancelled with `request_cancel`, a checkpoint is forked with `fork_run`), which
the admin offers as actions. Lists are built for large tables: no per-row
queries, no unfiltered count, big JSON columns deferred, filter choices from
the workflow registry instead of a DISTINCT over the table, and searches are
id (or id prefix) ranges that use the primary key and foreign key indexes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q, QuerySet
from django.db.models.functions import Length
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from wfdash.workflow import Workflow
from wfdash.workflow.errors import SerializationError

from . import access, filters, registry
from .inputs import InputError
from .models import TERMINAL, Activity, ApiToken, Blob, Checkpoint, CodeVersion, Experiment, Run, RunStatus, fork_run
from .states import expand_records
from .templatetags.wfdash import format_ms

# Longest JSON text shown on a page; past it the text is cut with a note.
MAX_JSON_CHARS = 200_000
# Most checkpoints one "fork" action may fork (select-all on a big table would queue a run per row).
MAX_FORKS = 100
BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


# -- display helpers -------------------------------------------------------------


def pretty_json(value: Any) -> SafeString | None:
    """`value` as indented JSON in a <pre>, escaped; None (shown as "-") when there is none."""
    if value is None:
        return None
    # Sorted keys: PostgreSQL's jsonb does not keep the order they were written in.
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    if len(text) > MAX_JSON_CHARS:
        text = f"{text[:MAX_JSON_CHARS]}\n… (cut: {len(text):,} characters in all)"
    return pre(text)


def pre(text: str) -> SafeString:
    return format_html('<pre class="wfdash-pre" style="white-space: pre-wrap; margin: 0">{}</pre>', text)


def admin_link(obj: Any, text: Any) -> SafeString:
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text)


def id_search(term: str, *fields: str) -> Q | None:
    """Rows whose id `fields` start with `term` (a whole id or 6+ hex digits); None if it is neither."""
    try:
        q = Q()
        for field in fields:
            q |= filters.id_prefix_q(term, "search", field)
        return q
    except filters.FilterError:
        return None


def short_id(value: Any) -> SafeString:
    """The first 8 characters of an id, the whole id on hover (ids are searchable by prefix)."""
    return format_html('<span class="wfdash-id" title="{}">{}</span>', value, str(value)[:8])


def duration_text(ms: float | None) -> str | None:
    """Milliseconds as people read them: "51.2 ms", not 51.24200015416136."""
    return None if ms is None else format_ms(ms)


def field_names(fieldsets: Any) -> tuple[str, ...]:
    """Every field named in `fieldsets`: all of them are read-only."""
    return tuple(name for _, options in fieldsets for name in options["fields"])


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class DeferringChangeList(ChangeList):
    """Leaves the model admin's `list_defer` columns (large JSON) out of list queries."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        qs = super().get_queryset(request, exclude_parameters)
        if narrow := getattr(self.model_admin, "list_rows", None):
            qs = narrow(qs)
        deferred = getattr(self.model_admin, "list_defer", ())
        return qs.defer(*deferred) if deferred else qs


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """No add, change or delete: pages are view-only and show every field read-only."""

    list_defer: Sequence[str] = ()
    show_full_result_count = False  # no COUNT(*) of the whole table on every list page
    show_facets = admin.ShowFacets.NEVER  # facet counts are a query per filter choice

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DeferringChangeList

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def search_message(self, request: HttpRequest, term: str) -> None:
        self.message_user(
            request,
            f"Search is by id or its first {filters.MIN_PREFIX}+ hex digits: "
            f"{term[:80]!r} is not a UUID or a prefix of one.",
            messages.WARNING,
        )


class IdSearchAdmin(ReadOnlyAdmin):
    """Search by id (or a prefix of one) in `id_search_fields`; any other term finds nothing
    and says why (no LIKE over millions of rows)."""

    id_search_fields: Sequence[str] = ("id",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        if not search_term.strip():
            return queryset, False
        by_id = id_search(search_term, *self.id_search_fields)
        if by_id is None:
            self.search_message(request, search_term)
            return queryset.none(), False
        return queryset.filter(by_id), False


# -- list filters from the workflow registry (no DISTINCT over millions of rows) --


def registered_workflows(only: str | None = None) -> list[Workflow]:
    found = []
    for name in registry.names():
        if only and name != only:
            continue
        try:
            found.append(registry.get_workflow(name))
        except Exception:  # a misconfigured entry must not break the admin
            continue
    return found


class RegistryFilter(admin.SimpleListFilter):
    """Choices are the names the registered workflows know; any value given in the URL still filters."""

    field = ""

    def names(self, request: HttpRequest) -> Iterable[str]:
        raise NotImplementedError

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        choices = [(name, name) for name in sorted(set(self.names(request)))]
        current = self.value()
        if current and all(current != name for name, _ in choices):
            choices.append((current, f"{current} (not registered)"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset

    @staticmethod
    def selected_workflow(request: HttpRequest) -> str | None:
        return request.GET.get("workflow") or None


class WorkflowFilter(RegistryFilter):
    title = "workflow"
    parameter_name = field = "workflow"

    def names(self, request: HttpRequest) -> Iterable[str]:
        return registry.names()


class StepFilter(RegistryFilter):
    title = "last completed step"
    parameter_name = field = "last_completed_step"

    def names(self, request: HttpRequest) -> Iterable[str]:
        return [s for w in registered_workflows(self.selected_workflow(request)) for s in w.steps]


class InputEventTypeFilter(RegistryFilter):
    title = "input event type"
    parameter_name = field = "input_event_type"

    def names(self, request: HttpRequest) -> Iterable[str]:
        return [e for w in registered_workflows(self.selected_workflow(request)) for e in w.event_registry.names()]


class OutputEventTypeFilter(InputEventTypeFilter):
    title = "output event type"
    parameter_name = field = "output_event_type"


# -- runs ------------------------------------------------------------------------

RUN_JSON = ("start_event", "result", "fork_edits", "pending_input")


class ActivityInline(admin.TabularInline):  # type: ignore[type-arg]
    """Who started, forked, cancelled or answered the run, newest first."""

    model = Activity
    fields = ("at", "action", "username", "detail")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    ordering = ("-at",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "username", "run_link")
    list_filter = ("action",)
    search_fields = ("username",)
    search_help_text = "A run id (or its first 6+ hex digits), or an exact username."
    list_select_related = ("run",)
    list_defer = tuple(f"run__{name}" for name in (*RUN_JSON, "error", "error_traceback"))
    date_hierarchy = None

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        by_run = id_search(term, "run_id")
        if by_run is not None:
            return queryset.filter(by_run | Q(username=term)), False
        return queryset.filter(username=term), False

    @admin.display(description="run", ordering="run_id")
    def run_link(self, obj: Activity) -> SafeString:
        return format_html("{} {}", admin_link(obj.run, short_id(obj.run_id)), obj.run.workflow)


@admin.register(Run)
class RunAdmin(IdSearchAdmin):
    inlines = (ActivityInline,)
    list_display = (
        "short",
        "workflow",
        "status",
        "created_at",
        "run_time",
        "checkpoint_count",
        "total_tokens",
        "parent",
    )
    list_display_links = ("short",)
    list_filter = ("status", WorkflowFilter)
    # Only columns with an index behind the sort.
    sortable_by = ("short", "workflow", "status", "created_at")
    ordering = ("-created_at", "-id")
    list_select_related = ("parent_checkpoint",)
    list_defer = (
        *RUN_JSON,
        "error",
        "error_traceback",
        "parent_checkpoint__input_event",
        "parent_checkpoint__output_event",
        "parent_checkpoint__state",
        "parent_checkpoint__usage",
    )
    search_fields = ("id",)  # shows the search box; the search itself is get_search_results
    search_help_text = "A run id, or its first 6+ hex digits."
    raw_id_fields = ("parent_checkpoint", "created_by")
    actions = ("cancel",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "workflow",
                    "status",
                    "cancel_requested",
                    "created_by",
                    "parent_checkpoint",
                    "fork_edits_pretty",
                    "checkpoints",
                )
            },
        ),
        ("Timing", {"fields": ("created_at", "started_at", "finished_at", "updated_at", "run_time")}),
        ("Worker", {"fields": ("worker_id", "lease_expires_at", "attempts", "code_version")}),
        ("Usage", {"fields": ("checkpoint_count", "llm_calls", "prompt_tokens", "completion_tokens", "total_tokens")}),
        ("Events", {"fields": ("start_event_pretty", "pending_input_pretty", "result_pretty")}),
        ("Error", {"fields": ("error_pre", "error_traceback_pre")}),
    )
    readonly_fields = field_names(fieldsets)

    @admin.display(description="id", ordering="id")
    def short(self, obj: Run) -> SafeString:
        return short_id(obj.pk)

    @admin.display(description="duration")
    def run_time(self, obj: Run) -> str | None:
        duration = obj.duration
        return None if duration is None else duration_text(duration.total_seconds() * 1000)

    @admin.display(description="parent checkpoint")
    def parent(self, obj: Run) -> SafeString | None:
        c = obj.parent_checkpoint
        if c is None:
            return None
        return admin_link(c, format_html("{} #{} {}", short_id(c.run_id), c.seq, c.last_completed_step))

    @admin.display(description="checkpoints")
    def checkpoints(self, obj: Run) -> SafeString:
        url = reverse("admin:runs_checkpoint_changelist") + f"?run__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, plural(obj.checkpoint_count, "checkpoint"))

    @admin.display(description="start event")
    def start_event_pretty(self, obj: Run) -> SafeString | None:
        return pretty_json(obj.start_event)

    @admin.display(description="result")
    def result_pretty(self, obj: Run) -> SafeString | None:
        return pretty_json(obj.result)

    @admin.display(description="fork edits")
    def fork_edits_pretty(self, obj: Run) -> SafeString | None:
        return pretty_json(obj.fork_edits) if obj.fork_edits else None

    @admin.display(description="pending input")
    def pending_input_pretty(self, obj: Run) -> SafeString | None:
        return pretty_json(obj.pending_input)

    @admin.display(description="error")
    def error_pre(self, obj: Run) -> SafeString | None:
        return pre(obj.error) if obj.error else None

    @admin.display(description="traceback")
    def error_traceback_pre(self, obj: Run) -> SafeString | None:
        return pre(obj.error_traceback) if obj.error_traceback else None

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return access.allows(request.user, access.CHANGE)

    @admin.action(
        description="Cancel this run",
        description_plural="Cancel selected runs",
        permissions=["cancel"],
        location=BOTH_LOCATIONS,
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet[Run]) -> None:
        # Finished runs are counted, not touched: a select-all over a big table stays cheap.
        finished = queryset.filter(status__in=TERMINAL).count()
        cancelled = stopping = 0
        for run in queryset.exclude(status__in=TERMINAL).order_by().iterator():
            if not run.request_cancel(request.user):
                finished += 1  # finished between the query and the cancel
            elif run.status == RunStatus.CANCELLED:
                cancelled += 1
            else:
                stopping += 1  # running: its worker stops it at the next step
        parts = [f"{plural(cancelled, 'run')} cancelled"]
        if stopping:
            parts.append(f"{plural(stopping, 'running run')} asked to stop")
        parts.append(f"{plural(finished, 'run')} already finished")
        level = messages.SUCCESS if cancelled or stopping else messages.WARNING
        self.message_user(request, "; ".join(parts) + ".", level)


# -- checkpoints -----------------------------------------------------------------

CHECKPOINT_JSON = ("input_event", "output_event", "state", "usage")


@admin.register(Checkpoint)
class CheckpointAdmin(IdSearchAdmin):
    list_display = (
        "short",
        "run_link",
        "workflow",
        "seq",
        "last_completed_step",
        "input_event_type",
        "output_event_type",
        "created_at",
        "duration",
    )
    list_display_links = ("short",)
    list_filter = (WorkflowFilter, StepFilter, InputEventTypeFilter, OutputEventTypeFilter)
    sortable_by = ("workflow", "last_completed_step", "input_event_type", "output_event_type", "created_at")
    ordering = ("-created_at", "-id")
    list_select_related = ("run",)
    list_defer = (
        *CHECKPOINT_JSON,
        *(f"run__{name}" for name in (*RUN_JSON, "error", "error_traceback")),
    )
    search_fields = ("id",)
    search_help_text = "A checkpoint id or run id, or its first 6+ hex digits."
    raw_id_fields = ("run",)
    actions = ("fork",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "run",
                    "workflow",
                    "seq",
                    "last_completed_step",
                    "input_event_type",
                    "output_event_type",
                    "created_at",
                    "duration",
                    "forks",
                )
            },
        ),
        ("Events", {"fields": ("input_event_pretty", "output_event_pretty")}),
        ("Context", {"fields": ("ctx_state_pretty", "store_pretty", "state_pretty", "blobs")}),
        ("Usage", {"fields": ("usage_pretty",)}),
    )
    readonly_fields = field_names(fieldsets)
    id_search_fields = ("id", "run_id")

    def list_rows(self, qs: QuerySet[Checkpoint]) -> QuerySet[Checkpoint]:
        # The list's order and filters read the explorer's indexes.
        return Checkpoint.listing(qs)

    @admin.display(description="id", ordering="id")
    def short(self, obj: Checkpoint) -> SafeString:
        return short_id(obj.pk)

    @admin.display(description="duration", ordering="duration_ms")
    def duration(self, obj: Checkpoint) -> str | None:
        return duration_text(obj.duration_ms)

    @admin.display(description="run")
    def run_link(self, obj: Checkpoint) -> SafeString:
        return format_html("{} ({})", admin_link(obj.run, short_id(obj.run_id)), obj.run.status)

    @admin.display(description="forks")
    def forks(self, obj: Checkpoint) -> SafeString:
        count = Run.objects.filter(parent_checkpoint=obj).count()
        url = reverse("admin:runs_run_changelist") + f"?parent_checkpoint__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, plural(count, "run") + " forked from here")

    @admin.display(description="input event")
    def input_event_pretty(self, obj: Checkpoint) -> SafeString | None:
        return pretty_json(obj.input_event)

    @admin.display(description="output event")
    def output_event_pretty(self, obj: Checkpoint) -> SafeString | None:
        return pretty_json(obj.output_event)

    @admin.display(description="context state (complete, built from the records)")
    def ctx_state_pretty(self, obj: Checkpoint) -> SafeString | None:
        try:
            return pretty_json(obj.context_state())
        except (SerializationError, ValueError, TypeError, KeyError) as exc:
            return format_html('<p class="errornote">{}</p>', f"cannot build the state: {exc}")

    @admin.display(description="store values this record carries (blobs resolved)")
    def store_pretty(self, obj: Checkpoint) -> SafeString | None:
        try:
            return pretty_json(expand_records([obj.state])[0].get("store", {}))
        except (SerializationError, ValueError, TypeError, KeyError) as exc:
            return format_html('<p class="errornote">{}</p>', f"cannot expand the store: {exc}")

    @admin.display(description="state record (as stored: full, or what this step changed)")
    def state_pretty(self, obj: Checkpoint) -> SafeString | None:
        return pretty_json(obj.state)

    @admin.display(description="blobs")
    def blobs(self, obj: Checkpoint) -> SafeString | None:
        store = obj.state.get("store") if isinstance(obj.state, dict) else None
        if not isinstance(store, dict):
            return None
        refs = {key: v["b"] for key, v in store.items() if isinstance(v, dict) and isinstance(v.get("b"), str)}
        if not refs:
            return None
        sizes = dict(
            Blob.objects.filter(hash__in=set(refs.values())).annotate(size=Length("data")).values_list("hash", "size")
        )
        rows = []
        for key, digest in sorted(refs.items()):
            if digest in sizes:
                url = reverse("admin:runs_blob_change", args=[digest])
                rows.append((key, format_html('<a href="{}">{}</a> ({} characters)', url, digest, sizes[digest])))
            else:
                rows.append((key, format_html("{} (missing)", digest)))
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}: {}</li>", rows))

    @admin.display(description="LLM usage")
    def usage_pretty(self, obj: Checkpoint) -> SafeString | None:
        return pretty_json(obj.usage)

    def has_fork_permission(self, request: HttpRequest) -> bool:
        return access.allows(request.user, access.ADD)

    @admin.action(
        description="Fork from this checkpoint",
        description_plural="Fork from each selected checkpoint",
        permissions=["fork"],
        location=BOTH_LOCATIONS,
    )
    def fork(self, request: HttpRequest, queryset: QuerySet[Checkpoint]) -> None:
        ids = list(queryset.order_by().values_list("id", flat=True)[: MAX_FORKS + 1])
        if len(ids) > MAX_FORKS:
            self.message_user(request, f"Fork at most {MAX_FORKS} checkpoints at once.", messages.ERROR)
            return
        forked: list[Run] = []
        for checkpoint_id in ids:
            try:
                forked.append(fork_run(checkpoint_id, user=request.user))
            except InputError as exc:
                self.message_user(request, f"Checkpoint {checkpoint_id} was not forked: {exc}", messages.ERROR)
        if forked:
            links = format_html_join(", ", "{}", ((admin_link(run, run.pk),) for run in forked))
            self.message_user(
                request,
                format_html(
                    "Forked {}; new {}: {}",
                    plural(len(forked), "checkpoint"),
                    "run" if len(forked) == 1 else "runs",
                    links,
                ),
                messages.SUCCESS,
            )


# -- experiments (sweeps) --------------------------------------------------------


@admin.register(Experiment)
class ExperimentAdmin(IdSearchAdmin):
    """Read-only: experiments are created by a sweep (page, API or `fork --variants`). Seen by
    whoever may see runs (the one policy), not by a permission of their own."""

    list_display = ("short", "name", "base", "runs_made", "created_by", "created_at")
    list_display_links = ("short",)
    sortable_by = ("short", "created_at")
    ordering = ("-created_at", "-id")
    list_select_related = ("checkpoint", "created_by")
    list_defer = ("variants", "grid", "checkpoint__input_event", "checkpoint__output_event", "checkpoint__state")
    search_fields = ("id",)
    search_help_text = "An experiment id, or its first 6+ hex digits."
    raw_id_fields = ("checkpoint", "base_run", "created_by")
    fields = ("id", "name", "base", "created_by", "created_at", "runs", "grid_pretty", "variants_pretty")
    readonly_fields = fields

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.allows(request.user, access.VIEW)

    @admin.display(description="id", ordering="id")
    def short(self, obj: Experiment) -> SafeString:
        return short_id(obj.pk)

    @admin.display(description="forked from")
    def base(self, obj: Experiment) -> SafeString:
        c = obj.checkpoint
        return admin_link(c, format_html("{} #{} {}", short_id(c.run_id), c.seq, c.last_completed_step))

    @admin.display(description="runs", ordering="variant_count")
    def runs_made(self, obj: Experiment) -> int:
        return obj.variant_count

    @admin.display(description="runs")
    def runs(self, obj: Experiment) -> SafeString:
        page = reverse("experiment-detail", args=[obj.pk])
        listed = reverse("admin:runs_run_changelist") + f"?experiment__id__exact={obj.pk}"
        return format_html('<a href="{}">the matrix</a> · <a href="{}">the runs in the admin</a>', page, listed)

    @admin.display(description="grid")
    def grid_pretty(self, obj: Experiment) -> SafeString | None:
        return pretty_json(obj.grid)

    @admin.display(description="variants' edits")
    def variants_pretty(self, obj: Experiment) -> SafeString | None:
        return pretty_json(obj.variants)


# -- code versions ---------------------------------------------------------------


@admin.register(CodeVersion)
class CodeVersionAdmin(ReadOnlyAdmin):
    """The code runs ran with (runs/code_versions.py): step sources and event schemas."""

    list_display = ("digest", "workflow", "created_at")
    list_filter = (WorkflowFilter,)
    sortable_by = ("digest", "created_at")
    ordering = ("-created_at",)
    list_defer = ("manifest",)
    search_fields = ("digest",)
    search_help_text = "A digest, or its first characters."
    fields = ("digest", "workflow", "created_at", "manifest_pretty")
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip().lower()
        if not term:
            return queryset, False
        if len(term) > 64 or any(ch not in "0123456789abcdef" for ch in term):
            self.message_user(request, f"A digest is hex digits: {term[:80]!r} is not.", messages.WARNING)
            return queryset.none(), False
        return queryset.filter(digest__startswith=term), False

    @admin.display(description="manifest")
    def manifest_pretty(self, obj: CodeVersion) -> SafeString | None:
        return pretty_json(obj.manifest)


# -- blobs -----------------------------------------------------------------------


@admin.register(Blob)
class BlobAdmin(ReadOnlyAdmin):
    list_display = ("hash", "size")
    sortable_by = ("hash",)
    ordering = ("hash",)
    list_defer = ("data",)
    search_fields = ("hash",)
    search_help_text = "Exact SHA-256 hash."
    fields = ("hash", "size", "value")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Blob]:
        return super().get_queryset(request).annotate(size=Length("data"))

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip().lower()
        return (queryset.filter(hash=term) if term else queryset), False

    @admin.display(description="size (characters)")
    def size(self, obj: Blob) -> int:
        size = getattr(obj, "size", None)
        return size if size is not None else len(obj.data)

    @admin.display(description="value")
    def value(self, obj: Blob) -> SafeString | None:
        try:
            return pretty_json(json.loads(obj.data))
        except ValueError:
            return pre(obj.data)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Tokens are created with `manage.py createtoken`; here they are listed and revoked."""

    list_display = ("prefix", "user", "name", "created_at", "last_used_at", "revoked")
    list_filter = ("revoked",)
    search_fields = ("prefix", "name", "user__username")
    readonly_fields = ("user", "prefix", "created_at", "last_used_at")
    exclude = ("token_hash",)
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the raw token must be shown once, which only createtoken does

    @admin.action(description="Revoke the selected tokens", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = queryset.update(revoked=True)
        self.message_user(request, f"{count} token(s) revoked.")


# Webhook endpoints and deliveries: their own module, registered on import.
from . import webhook_admin  # noqa: E402, F401
