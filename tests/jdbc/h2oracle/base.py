"""Test-only ENGINE: djpool.backends.jdbc.oracle with Django's Oracle version check off.

H2 in Oracle mode reports its own version (2.1), which Django's Oracle
backend rightly refuses (test_oracle.py checks that); everything else is the
real ENGINE.
"""

from __future__ import annotations

from django.db.backends.oracle import features

from djpool.backends.jdbc.oracle import base


class DatabaseFeatures(features.DatabaseFeatures):
    minimum_database_version = None


class DatabaseWrapper(base.DatabaseWrapper):
    features_class = DatabaseFeatures
