"""Configure Django minimally when these tests run on their own (no database needed)."""

from __future__ import annotations

import django
import pytest
from django.conf import settings


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    # trylast: in a whole-repo run, tests/conftest.py configures Django (with
    # its test database) first, and this does nothing.
    if not settings.configured:
        settings.configure(DATABASES={}, USE_TZ=True)
        django.setup()
