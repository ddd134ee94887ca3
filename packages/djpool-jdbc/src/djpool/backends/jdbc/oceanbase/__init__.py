"""OceanBase over OceanBase's JDBC driver: ENGINE ``djpool.backends.jdbc.oceanbase`` (raw SQL).

Sub-packages: ``.mysql`` and ``.oracle``, Django's MySQL and Oracle backends
on OceanBase's two compatibility modes.
"""
