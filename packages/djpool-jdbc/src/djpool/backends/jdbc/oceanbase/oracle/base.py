"""Django's Oracle backend over JDBC, for OceanBase's Oracle mode.

ENGINE ``djpool.backends.jdbc.oceanbase.oracle``: the JDBC Oracle backend
(:mod:`djpool.backends.jdbc.oracle.base`) with OceanBase's driver
``com.oceanbase.jdbc.Driver`` and URL ``jdbc:oceanbase://HOST:PORT/NAME``
(port 2881). Oracle-mode tenants are an OceanBase Enterprise feature.

OceanBase reports its own version (4.x) through the driver, not Oracle's,
so Django's "Oracle 19 or later" check is not applied here.
"""

from __future__ import annotations

from django.db.backends.oracle import features as oracle_features

from djpool.backends.jdbc.mixins import JDBCPoolMixin
from djpool.backends.jdbc.oceanbase.base import OCEANBASE_DRIVER, OCEANBASE_PORT, OCEANBASE_URL
from djpool.backends.jdbc.oracle.base import OracleJDBCDatabaseWrapper


class DatabaseFeatures(oracle_features.DatabaseFeatures):
    minimum_database_version = None


class OceanBaseOracleDatabaseWrapper(OracleJDBCDatabaseWrapper):
    display_name = "OceanBase (Oracle mode, JDBC)"
    jdbc_driver = OCEANBASE_DRIVER
    jdbc_url_template = OCEANBASE_URL
    jdbc_default_port = OCEANBASE_PORT
    features_class = DatabaseFeatures


class DatabaseWrapper(JDBCPoolMixin, OceanBaseOracleDatabaseWrapper):
    djpool_wrapper_state = ("operators", "pattern_ops")
