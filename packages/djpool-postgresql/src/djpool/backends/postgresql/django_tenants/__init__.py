"""Pooled django-tenants backend: ENGINE ``djpool.backends.postgresql.django_tenants``.

Install it with ``pip install "djpool-postgresql[tenants]"``.
"""
