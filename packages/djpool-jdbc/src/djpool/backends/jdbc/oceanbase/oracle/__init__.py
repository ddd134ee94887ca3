"""OceanBase Oracle mode: ENGINE ``djpool.backends.jdbc.oceanbase.oracle``."""
