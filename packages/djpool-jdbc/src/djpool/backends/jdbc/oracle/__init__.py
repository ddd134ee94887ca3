"""Oracle over the Oracle JDBC driver: ENGINE ``djpool.backends.jdbc.oracle``."""
