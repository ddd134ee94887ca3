"""JVM start, class path, time zone and interpreter exit: each in a fresh interpreter.

A JVM starts once per process, so what happens *at* start (class path from
JDBC_CLASSPATH, errors when no JVM or driver is found, the UTC pin) and at
exit is checked in subprocesses, each under a timeout.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.jdbc import servers
from tests.jdbc.conftest import run_python

SETUP = textwrap.dedent(
    """
    import django, sys, time
    from django.conf import settings
    settings.configure(DATABASES={}, USE_TZ=True)
    django.setup()
    from django.db import connections
    def add(alias, entry):
        connections.settings[alias] = connections.configure_settings({"default": {}, alias: entry})[alias]
    """
)


def run(code: str, **env: str):
    result = run_python(SETUP + textwrap.dedent(code), env=env, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_jdbc_classpath_setting_is_enough(tmp_path):
    h2 = [entry for entry in servers.class_path().split(":") if entry.endswith("/h2.jar")][0]
    out = run(
        f"""
        add("h2", {{"ENGINE": "djpool.backends.jdbc", "JDBC_DRIVER": "org.h2.Driver",
                    "JDBC_URL": "jdbc:h2:mem:cp", "JDBC_CLASSPATH": [{h2!r}]}})
        with connections["h2"].cursor() as cursor:
            cursor.execute("SELECT H2VERSION()")
            print(cursor.fetchone()[0])
        """,
        CLASSPATH="",
    )
    assert out.strip().startswith("2.")


def test_missing_driver_class_says_where_it_looked():
    out = run(
        """
        from django.core.exceptions import ImproperlyConfigured
        add("x", {"ENGINE": "djpool.backends.jdbc.oracle", "NAME": "FREEPDB1", "PASSWORD": "s3cret-pw"})
        try:
            connections["x"].ensure_connection()
        except ImproperlyConfigured as error:
            print(error)
        """,
        CLASSPATH=servers.class_path(),
    )
    assert "DATABASES['x']: JDBC driver class 'oracle.jdbc.OracleDriver' not found" in out
    assert "postgresql.jar" in out  # the class path it searched
    assert "JDBC_CLASSPATH" in out and "CLASSPATH" in out
    assert "s3cret-pw" not in out


def test_no_jvm_is_reported_with_the_fix():
    out = run(
        """
        import jpype
        from django.core.exceptions import ImproperlyConfigured
        def no_jvm():
            raise jpype.JVMNotFoundException("No JVM shared library file (libjvm.so) found.")
        jpype.getDefaultJVMPath = no_jvm
        add("x", {"ENGINE": "djpool.backends.jdbc", "JDBC_URL": "jdbc:h2:mem:x"})
        try:
            connections["x"].ensure_connection()
        except ImproperlyConfigured as error:
            print(error)
        """,
        JAVA_HOME="/nonexistent/jdk",
    )
    assert "no Java virtual machine found" in out
    assert "JAVA_HOME='/nonexistent/jdk'" in out
    assert "default-jre-headless" in out


@pytest.mark.parametrize("bridge", ["jpype", "jaydebeapi"])
def test_interpreter_exits_after_threads_used_jdbc(bridge):
    # JayDeBeApi attaches threads as non-daemon Java threads; after one ends
    # the interpreter used to hang at exit. run_python's timeout catches that.
    out = run(
        f"""
        import threading
        add("pg", {{"ENGINE": "djpool.backends.jdbc", "JDBC_DRIVER": "org.postgresql.Driver",
                     "JDBC_URL": "jdbc:postgresql://127.0.0.1:5432/postgres", "USER": "postgres",
                     "JDBC_BRIDGE": {bridge!r}, "POOL_OPTIONS": {{"POOL_SIZE": 2}}}})
        def work():
            for _ in range(3):
                with connections["pg"].cursor() as cursor:
                    cursor.execute("SELECT 1")
                connections["pg"].close()
        threads = [threading.Thread(target=work) for _ in range(6)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("done", time.monotonic())
        """,
        CLASSPATH=servers.class_path(),
    )
    assert out.startswith("done")


def test_timestamps_round_trip_whatever_the_host_time_zone():
    # 02:30 on 2024-03-10 does not exist in New York; a JVM in that zone
    # would store 03:30. The JVM is pinned to UTC.
    out = run(
        """
        import datetime
        add("my", {"ENGINE": "djpool.backends.jdbc", "JDBC_DRIVER": "org.mariadb.jdbc.Driver",
                   "JDBC_URL": "jdbc:mariadb://127.0.0.1:3306/test", "USER": "root"})
        value = datetime.datetime(2024, 3, 10, 2, 30, 0, 250000)
        with connections["my"].cursor() as cursor:
            cursor.execute("CREATE TEMPORARY TABLE tz (ts datetime(6))")
            cursor.execute("INSERT INTO tz VALUES (%s)", [value])
            cursor.execute("SELECT ts, CAST(ts AS char) FROM tz")
            print(cursor.fetchone() == (value, "2024-03-10 02:30:00.250000"))
        """,
        CLASSPATH=servers.class_path(),
        TZ="America/New_York",
    )
    assert out.strip() == "True"


def test_forked_child_gets_a_clear_error_instead_of_a_hang():
    out = run(
        """
        import os
        from django.core.exceptions import ImproperlyConfigured
        add("h2", {"ENGINE": "djpool.backends.jdbc", "JDBC_DRIVER": "org.h2.Driver", "JDBC_URL": "jdbc:h2:mem:f"})
        with connections["h2"].cursor() as cursor:
            cursor.execute("SELECT 1")
        connections["h2"].close()
        pid = os.fork()
        if pid == 0:
            try:
                connections["h2"].ensure_connection()
            except ImproperlyConfigured as error:
                print("child:", error, flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        """,
        CLASSPATH=servers.class_path(),
    )
    assert "child: djpool JDBC: this process was forked from process" in out
    assert "does not survive fork()" in out
