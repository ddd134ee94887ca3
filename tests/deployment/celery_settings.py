"""Django settings module for the Celery worker (``DJANGO_SETTINGS_MODULE``, as Celery's Django fixup wants).

The database under test comes as JSON in ``DJPOOL_REL_DATABASE``.
"""

from __future__ import annotations

import json
import os

DEBUG = False
DATABASES = {"default": json.loads(os.environ["DJPOOL_REL_DATABASE"])}
INSTALLED_APPS = ["tests.testapp"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
LOGGING_CONFIG = None
SECRET_KEY = "djpool-deployment-tests"
