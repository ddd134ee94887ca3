"""Django backends over JDBC drivers, pooled by djpool.

ENGINEs: ``djpool.backends.jdbc`` (any JDBC driver, raw SQL),
``djpool.backends.jdbc.oracle`` (Django's Oracle backend over the Oracle JDBC
driver), ``djpool.backends.jdbc.oceanbase`` (OceanBase's driver, raw SQL),
``djpool.backends.jdbc.oceanbase.mysql`` and
``djpool.backends.jdbc.oceanbase.oracle`` (Django's MySQL and Oracle backends
on OceanBase's two modes). The JVM, the DB-API layer and the pool dialect are
shared: :mod:`.jvm`, :mod:`.dbapi`, :mod:`.dialect`.
"""
