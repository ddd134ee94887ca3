from __future__ import annotations

from django.urls import path

from djbench import views

urlpatterns = [
    path("orm", views.orm_read),
    path("select", views.select_one),
    path("work", views.work),
    path("ping", views.ping),
]
