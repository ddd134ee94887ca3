"""Configure Django minimally when these tests run on their own (no database needed)."""

from __future__ import annotations

import django
from django.conf import settings


def pytest_configure(config):
    if not settings.configured:
        settings.configure(DATABASES={}, USE_TZ=True)
        django.setup()
