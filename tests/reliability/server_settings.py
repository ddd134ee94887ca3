"""Django settings for the apps that the reliability tests serve from a real server process.

The test passes the DATABASES entry under test as JSON in ``DJPOOL_REL_DATABASE``.
"""

from __future__ import annotations

import json
import os

import django
from django.conf import settings


def configure(root_urlconf: str, installed_apps: list[str] | None = None) -> None:
    """Configure Django for a server process whose one database is ``DJPOOL_REL_DATABASE``.

    ``installed_apps``: apps whose models the views use (their tables are the
    test database's, migrated by the pytest process).
    """
    settings.configure(
        DEBUG=False,
        ROOT_URLCONF=root_urlconf,
        ALLOWED_HOSTS=["*"],
        DATABASES={"default": json.loads(os.environ["DJPOOL_REL_DATABASE"])},
        INSTALLED_APPS=installed_apps or [],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()
