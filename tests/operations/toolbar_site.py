"""A tiny site with django-debug-toolbar and the pool panel, for tests/operations/test_debug_toolbar*.py.

Its URLs are in ``toolbar_urls`` (importing the toolbar's URLs needs its app installed).

Views take the database alias from ``?alias=`` (tests create their aliases
at run time) and print the server session ids they used, so a test can
compare them with what the panel shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.test.utils import override_settings

# A statement no one else sends: on PostgreSQL, pg_stat_activity.query then
# tells whether anything ran on the session after the view's last query.
MARKED_QUERY = {
    "postgresql": "SELECT pg_backend_pid() AS djpool_toolbar_view",
    "mysql": "SELECT CONNECTION_ID() AS djpool_toolbar_view",
}


def show_toolbar(request: HttpRequest) -> bool:
    return True


def session_of(alias: str) -> int:
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(MARKED_QUERY[connection.vendor])
        return int(cursor.fetchone()[0])


def sessions(request: HttpRequest) -> HttpResponse:
    """One query per ``alias`` parameter, ``times`` times each (transaction mode: one checkout each)."""
    times = int(request.GET.get("times", "1"))
    seen = [(alias, session_of(alias)) for alias in request.GET.getlist("alias") for _ in range(times)]
    items = "".join(f'<li class="session" data-alias="{alias}">{pid}</li>' for alias, pid in seen)
    return HttpResponse(f"<!DOCTYPE html><html><head><title>djpool</title></head><body><ul>{items}</ul></body></html>")


@contextmanager
def toolbar_installed(**extra: Any) -> Iterator[None]:
    """The toolbar with the pool panel on the test project (``extra``: more settings).

    INSTALLED_APPS is overridden after the others (override_settings
    populates the apps before it swaps the other settings in, and the
    toolbar's ``ready()`` reads STATIC_URL), and before the toolbar's own.
    """
    overrides = {**toolbar_settings(), **extra}
    installed_apps = overrides.pop("INSTALLED_APPS")
    # The toolbar's own settings last: its setting_changed receiver imports its models.
    toolbar = {key: overrides.pop(key) for key in list(overrides) if key.startswith("DEBUG_TOOLBAR_")}
    with override_settings(**overrides), override_settings(INSTALLED_APPS=installed_apps), override_settings(**toolbar):
        yield


def toolbar_settings() -> dict[str, Any]:
    """Settings to override: the toolbar with the pool panel, on the test project."""
    from debug_toolbar.settings import PANELS_DEFAULTS

    return {
        "DEBUG": True,
        "INSTALLED_APPS": [*settings.INSTALLED_APPS, "django.contrib.staticfiles", "debug_toolbar", "djpool.core"],
        "MIDDLEWARE": ["debug_toolbar.middleware.DebugToolbarMiddleware"],
        "ROOT_URLCONF": "tests.operations.toolbar_urls",
        "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True, "OPTIONS": {}}],
        "STATIC_URL": "/static/",
        "STORAGES": {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        },
        "ALLOWED_HOSTS": ["*"],
        # Not the settings panel: the test settings have no SECRET_KEY, which it reads.
        "DEBUG_TOOLBAR_PANELS": [
            *(panel for panel in PANELS_DEFAULTS if not panel.endswith(".SettingsPanel")),
            "djpool.core.contrib.debug_toolbar.PoolPanel",
        ],
        "DEBUG_TOOLBAR_CONFIG": {
            "SHOW_TOOLBAR_CALLBACK": "tests.operations.toolbar_site.show_toolbar",
            "IS_RUNNING_TESTS": False,
        },
    }
