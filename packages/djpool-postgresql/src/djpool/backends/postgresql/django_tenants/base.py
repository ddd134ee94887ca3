"""django-tenants database backend, with djpool's connection pool.

django-tenants' ``django_tenants.postgresql_backend`` runs unchanged on top of
the PostgreSQL backend named by its ``ORIGINAL_BACKEND`` setting (Django's
``postgresql`` or GeoDjango's ``postgis``); connections come from the pool,
with the same hooks as ``djpool.backends.postgresql``.

Tenant isolation: django-tenants sets ``search_path`` on the connection and,
with ``TENANT_LIMIT_SET_CALLS``, remembers on the *wrapper* that it did so.
A pooled connection arrives with whatever ``search_path`` its previous user
left, so that memory is cleared every time the wrapper takes a connection
from the pool: the first cursor on it always sets this tenant's path.

Requires django-tenants (``pip install "djpool-postgresql[tenants]"``).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django_tenants.postgresql_backend import base

from djpool.backends.postgresql.base import PostgreSQLPoolMixin
from djpool.core.mixins import PooledDatabaseWrapperMixin

__all__ = ["DatabaseWrapper"]

if issubclass(base.DatabaseWrapper, PooledDatabaseWrapperMixin):
    # The pool would wrap itself; Python cannot even order the classes.
    raise ImproperlyConfigured(
        f"settings.ORIGINAL_BACKEND = {base.ORIGINAL_BACKEND!r} is already a pooled backend. "
        f"With ENGINE 'djpool.backends.postgresql.django_tenants', set ORIGINAL_BACKEND to "
        f"Django's backend: 'django.db.backends.postgresql' (the default) or "
        f"'django.contrib.gis.db.backends.postgis'."
    )


class DatabaseWrapper(PostgreSQLPoolMixin, base.DatabaseWrapper):
    def djpool_connection_taken(self) -> None:
        # The search_path this wrapper set was on the connection it gave back
        # (POOL_MODE="transaction" gives it back without close(), where
        # django-tenants would forget it). This one may carry another tenant's.
        self.search_path_set_schemas = None
