from __future__ import annotations

from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from runs import metrics, views
from runs.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", api.urls),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # Browsers ask for it on a first visit whatever the page links to.
    path("favicon.ico", RedirectView.as_view(url=static("wfdash/favicon.svg"), permanent=True)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("runs.urls")),
]

handler400 = "wfdash.errors.bad_request"
handler403 = "wfdash.errors.permission_denied"
handler404 = "wfdash.errors.not_found"
handler500 = "wfdash.errors.server_error"
