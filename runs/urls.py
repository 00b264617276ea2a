from __future__ import annotations

from django.urls import path

from . import experiment_views, views

urlpatterns = [
    path("", views.runs_list, name="runs-list"),
    path("runs/new/", views.run_new, name="run-new"),
    path("runs/<uuid:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<uuid:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<uuid:run_id>/respond/", views.run_respond, name="run-respond"),
    path("runs/<uuid:run_id>/compare/", views.run_compare, name="run-compare"),
    path("runs/<uuid:run_id>/compare/<uuid:other_id>/", views.run_compare_with, name="run-compare-with"),
    path("checkpoints/", views.checkpoints_explorer, name="checkpoints"),
    path("checkpoints/<uuid:checkpoint_id>/", views.checkpoint_detail, name="checkpoint-detail"),
    path("checkpoints/<uuid:checkpoint_id>/fork/", views.checkpoint_fork, name="checkpoint-fork"),
    path("checkpoints/<uuid:checkpoint_id>/edit/", views.checkpoint_edit_fork, name="checkpoint-edit-fork"),
    path("checkpoints/<uuid:checkpoint_id>/sweep/", experiment_views.checkpoint_sweep, name="checkpoint-sweep"),
    path("experiments/<uuid:experiment_id>/", experiment_views.experiment_detail, name="experiment-detail"),
]
