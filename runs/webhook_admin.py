"""The admin for webhooks: endpoints (the secret shown once, on add and on rotate, in that
response's page: never in a message, which the messages storage would keep in a cookie or
the session; never listed) and their deliveries (read-only, retried by an action).
Permissions come from runs/access.py: the endpoint's view/add/change/delete permissions
cover deliveries too, each with runs.view_run; full URLs need the change permission."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from . import access, registry, webhooks
from .admin import BOTH_LOCATIONS, ReadOnlyAdmin, admin_link, id_search, pretty_json, short_id
from .webhook_models import EVENTS, WebhookDelivery, WebhookEndpoint

# Endpoints one rotate action changes (and shows the new secrets of).
SECRETS_SHOWN = 50


class WebhookPolicy:
    """Model admin permissions asked of the one policy."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.allows(request.user, access.WEBHOOK_VIEW)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return access.allows(request.user, access.WEBHOOK_VIEW)


class EndpointForm(forms.ModelForm):  # type: ignore[type-arg]
    events = forms.MultipleChoiceField(choices=[(e, e) for e in EVENTS], widget=forms.CheckboxSelectMultiple)
    workflow = forms.ChoiceField(required=False, help_text="Empty: every workflow.")

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "workflow", "events", "active")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workflow"].choices = [("", "every workflow")] + [(n, n) for n in registry.names()]  # type: ignore[attr-defined]

    def _checked(self, name: str, check: Any) -> Any:
        try:
            return check(self.cleaned_data.get(name))
        except webhooks.WebhookError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_url(self) -> str:
        return str(self._checked("url", webhooks.check_url))

    def clean_workflow(self) -> str | None:
        return self._checked("workflow", webhooks.check_workflow)  # type: ignore[no-any-return]

    def clean_events(self) -> list[str]:
        return self._checked("events", webhooks.check_events)  # type: ignore[no-any-return]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(WebhookPolicy, admin.ModelAdmin):  # type: ignore[type-arg]
    form = EndpointForm
    list_display = ("url", "workflow", "events", "active", "created_by", "created_at")
    list_filter = ("active",)
    search_fields = ("url", "workflow")
    readonly_fields = ("redacted_url", "created_by", "created_at")
    actions = ("rotate_secret",)
    show_full_result_count = False

    # Whoever may not change webhooks sees (and searches) `scheme://host/…`, not the URL.
    def get_list_display(self, request: HttpRequest) -> Any:
        if self.has_change_permission(request):
            return self.list_display
        return ("redacted_url", *self.list_display[1:])

    def get_search_fields(self, request: HttpRequest) -> Any:
        return self.search_fields if self.has_change_permission(request) else ("workflow",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None or self.has_change_permission(request, obj):
            return ("url", "workflow", "events", "active", "created_by", "created_at")
        return ("redacted_url", "workflow", "events", "active", "created_by", "created_at")

    @admin.display(description="URL")
    def redacted_url(self, obj: WebhookEndpoint) -> str:
        return obj.redacted_url

    def has_add_permission(self, request: HttpRequest) -> bool:
        return access.allows(request.user, access.WEBHOOK_ADD)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.allows(request.user, access.WEBHOOK_CHANGE)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return access.allows(request.user, access.WEBHOOK_DELETE)

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return access.allows(request.user, access.WEBHOOK_CHANGE)

    def get_deleted_objects(
        self, objs: Any, request: HttpRequest
    ) -> tuple[list[Any], dict[str, int], set[str], list[Any]]:
        """What a delete removes, counted rather than listed: an endpoint may have a million deliveries."""
        endpoints = list(objs)
        deliveries = WebhookDelivery.objects.filter(endpoint__in=endpoints).count()
        summary = [f"{e} ({e.id})" for e in endpoints[:100]]
        summary.append(f"and {deliveries} webhook deliveries with them")
        counts = {"webhook endpoints": len(endpoints), "webhook deliveries": deliveries}
        return summary, counts, set(), []

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        if not change:
            obj.secret = webhooks.new_secret()
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None) -> Any:
        """The secret, shown this once, in this response's page."""
        return self._secrets_page(request, [(obj, obj.secret)], "Webhook endpoint added")

    @admin.action(
        description="Rotate the secret",
        description_plural="Rotate the selected endpoints' secrets",
        permissions=["rotate"],
        location=BOTH_LOCATIONS,
    )
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> HttpResponse:
        rotated = [(endpoint, webhooks.rotate_secret(endpoint)) for endpoint in queryset[:SECRETS_SHOWN]]
        return self._secrets_page(request, rotated, "Webhook secrets rotated")

    def _secrets_page(
        self, request: HttpRequest, secrets: list[tuple[WebhookEndpoint, str]], title: str
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "secrets": secrets,
            "changelist_url": reverse("admin:runs_webhookendpoint_changelist"),
        }
        # Admin views are never_cache: this page is not kept by a browser or a proxy.
        return TemplateResponse(request, "admin/runs/webhook_secrets.html", context)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(WebhookPolicy, ReadOnlyAdmin):
    list_display = (
        "short",
        "endpoint_host",
        "run_link",
        "event",
        "status",
        "attempts",
        "last_response_code",
        "next_attempt_at",
        "created_at",
    )
    list_filter = ("status", "event")
    list_select_related = ("endpoint",)
    list_defer = ("payload", "response_excerpt")
    actions = ("retry",)
    search_fields = ("message_id",)
    search_help_text = "A run id (or its first 6+ hex digits), or a message id."
    fields = (
        "message_id",
        "endpoint_link",
        "run_link",
        "event",
        "status",
        "attempts",
        "next_attempt_at",
        "last_response_code",
        "last_error",
        "response_excerpt",
        "created_at",
        "delivered_at",
        "payload_pretty",
    )
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        by_run = id_search(term, "run_id")
        if by_run is not None:
            return queryset.filter(by_run | Q(message_id=term)), False
        return queryset.filter(message_id=term), False

    @admin.display(description="message")
    def short(self, obj: WebhookDelivery) -> SafeString:
        return short_id(obj.message_id.removeprefix("msg_"))

    @admin.display(description="endpoint")
    def endpoint_host(self, obj: WebhookDelivery) -> str:
        return urlsplit(obj.endpoint.url).hostname or ""

    @admin.display(description="endpoint")
    def endpoint_link(self, obj: WebhookDelivery) -> SafeString:
        return admin_link(obj.endpoint, obj.endpoint.redacted_url)

    @admin.display(description="run")
    def run_link(self, obj: WebhookDelivery) -> SafeString:
        return format_html('<a href="{}">{}</a>', reverse("run-detail", args=[obj.run_id]), str(obj.run_id)[:8])

    @admin.display(description="payload")
    def payload_pretty(self, obj: WebhookDelivery) -> SafeString | None:
        return pretty_json(obj.payload)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return access.allows(request.user, access.WEBHOOK_CHANGE)

    @admin.action(
        description="Retry now",
        description_plural="Retry the selected deliveries now",
        permissions=["retry"],
        location=BOTH_LOCATIONS,
    )
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        retried = sum(d.retry_now() for d in queryset.defer("payload")[:500])
        noun = "delivery" if retried == 1 else "deliveries"
        self.message_user(request, f"{retried} {noun} queued to be sent again (any being sent now are left alone).")
