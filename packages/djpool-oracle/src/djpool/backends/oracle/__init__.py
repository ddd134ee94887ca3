"""Pooled Oracle backend (python-oracledb): ENGINE ``djpool.backends.oracle``."""
