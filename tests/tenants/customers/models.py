"""The tenant and domain models django-tenants requires (shared app, public schema)."""

from __future__ import annotations

from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    name = models.CharField(max_length=50)
    auto_create_schema = True


class Domain(DomainMixin):
    pass
