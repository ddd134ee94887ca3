"""URLs of the toolbar test site (``tests.operations.toolbar_site``), with the toolbar's own."""

from __future__ import annotations

from typing import Any

from debug_toolbar.toolbar import debug_toolbar_urls
from django.urls import path

from tests.operations.toolbar_site import sessions

urlpatterns: list[Any] = [path("sessions/", sessions), *debug_toolbar_urls()]
