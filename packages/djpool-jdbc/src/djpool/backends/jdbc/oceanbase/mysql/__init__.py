"""OceanBase MySQL mode: ENGINE ``djpool.backends.jdbc.oceanbase.mysql``."""
