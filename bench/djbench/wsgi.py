from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.db.utils import load_backend

from djbench import variants

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djbench.settings")
variants.apply_from_environment()  # before the workers (forked after --preload) open their pools
application = get_wsgi_application()

# Import now what the first request would: the database backend (and its
# driver) and the views. With --preload this happens once, in the master,
# before the workers fork; without, when a worker boots rather than in the
# middle of its first measured request.
if settings.DATABASES.get("default", {}).get("ENGINE"):
    load_backend(settings.DATABASES["default"]["ENGINE"])
import djbench.urls  # noqa: E402, F401
