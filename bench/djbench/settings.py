"""Django settings for the gunicorn run: one database, given by the benchmark in the environment.

``DJPOOL_BENCH_DATABASE`` holds the ``DATABASES['default']`` entry as JSON
(see :mod:`djbench.configs`). The in-process benchmark configures Django
itself, with one alias per configuration.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "djpool-bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["djbench"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "djbench.urls"
DATABASES = {"default": json.loads(os.environ["DJPOOL_BENCH_DATABASE"])} if "DJPOOL_BENCH_DATABASE" in os.environ else {}
LOGGING_CONFIG = None
