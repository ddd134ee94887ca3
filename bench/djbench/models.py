from __future__ import annotations

from django.db import models


class Item(models.Model):
    """A two-row table the ORM read fetches by primary key."""

    name = models.CharField(max_length=100)

    class Meta:
        app_label = "djbench"
        db_table = "bench_item"
        managed = False
