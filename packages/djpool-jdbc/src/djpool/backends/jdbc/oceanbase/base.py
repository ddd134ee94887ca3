"""OceanBase for raw SQL over OceanBase's JDBC driver: ENGINE ``djpool.backends.jdbc.oceanbase``.

The generic JDBC backend with OceanBase's defaults: driver
``com.oceanbase.jdbc.Driver`` (Maven ``com.oceanbase:oceanbase-client``),
URL ``jdbc:oceanbase://HOST:PORT/NAME`` (port 2881). For Django models use
``djpool.backends.jdbc.oceanbase.mysql`` or ``.oceanbase.oracle``.
"""

from __future__ import annotations

from djpool.backends.jdbc.base import JDBCDatabaseWrapper
from djpool.backends.jdbc.mixins import JDBCPoolMixin

OCEANBASE_DRIVER = "com.oceanbase.jdbc.Driver"
OCEANBASE_URL = "jdbc:oceanbase://{host}:{port}/{name}"
OCEANBASE_PORT = 2881


class OceanBaseDatabaseWrapper(JDBCDatabaseWrapper):
    display_name = "OceanBase (JDBC)"
    jdbc_driver = OCEANBASE_DRIVER
    jdbc_url_template = OCEANBASE_URL
    jdbc_default_port = OCEANBASE_PORT


class DatabaseWrapper(JDBCPoolMixin, OceanBaseDatabaseWrapper):
    pass
