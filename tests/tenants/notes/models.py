"""A model in both SHARED_APPS and TENANT_APPS: one table per schema, public included."""

from __future__ import annotations

from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=50)
