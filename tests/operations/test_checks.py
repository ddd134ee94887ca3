"""System checks: ``manage.py check`` reports pool misconfiguration (djpool.E*/W*)."""

from __future__ import annotations

import pytest
from django.core import checks
from django.core.checks.registry import registry as check_registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections

from djpool.core import checks as djpool_checks  # noqa: F401 - registers the checks
from djpool.core import registry
from djpool.core.options import parse_pool_options

pytestmark = pytest.mark.server_backed

SECRET = "s3cret-Passw0rd"


def issues(alias: str, databases: list[str] | None = None) -> list[checks.CheckMessage]:
    """djpool's messages about ``alias``, as ``manage.py check [--database ...]`` reports them.

    Only djpool's checks run (Django 6's own model checks connect to every
    alias). Without ``databases``, database-tagged checks are left out, as
    manage.py does without --database.
    """
    if databases:
        messages = checks.run_checks(databases=databases, tags=["djpool"])
    else:
        messages = []
        for check in check_registry.get_checks():
            if "djpool" in check.tags and checks.Tags.database not in check.tags:
                messages.extend(check(app_configs=None, databases=None))
    return [m for m in messages if f"[{alias!r}]" in m.msg]


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [message.id for message in messages]


@pytest.fixture
def workers(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("DJPOOL_WORKER_PROCESSES", raising=False)

    def set_workers(value: str, name: str = "DJPOOL_WORKER_PROCESSES") -> None:
        monkeypatch.setenv(name, value)

    return set_workers


def default_limit() -> int:
    return parse_pool_options("default", connections.settings["default"].get("POOL_OPTIONS")).max_connections


def server_max_connections(server) -> int:
    sql = "SHOW max_connections" if server.vendor == "postgresql" else "SELECT @@max_connections"
    return int(server.query(sql)[0][0])


# ##### Settings #####


def test_valid_settings_raise_nothing(make_alias):
    alias = make_alias({"POOL_SIZE": 3, "LEAK_DETECTION": 30})
    assert issues(alias) == []


def test_e001_invalid_pool_options(make_alias):
    alias = make_alias({"POOL_SIZE": "ten"})
    [message] = issues(alias)
    assert message.id == "djpool.E001"
    assert message.level == checks.ERROR
    assert message.msg == (
        f"DATABASES[{alias!r}]['POOL_OPTIONS']['POOL_SIZE'] must be an integer of 1 or more; got 'ten' (str)."
    )


def test_e001_unknown_key_suggests_the_right_one(make_alias):
    alias = make_alias({"POOL_SIZ": 3})
    [message] = issues(alias)
    assert message.id == "djpool.E001"
    assert "unknown key 'POOL_SIZ'. Did you mean 'POOL_SIZE'?" in message.msg


def test_e002_djangos_own_pool_with_a_djpool_engine(make_alias):
    alias = make_alias({}, OPTIONS={"pool": True})
    assert ids(issues(alias)) == ["djpool.E002"]


def test_e003_transaction_mode_needs_conn_max_age_0(make_alias):
    alias = make_alias({"POOL_MODE": "transaction"}, CONN_MAX_AGE=60)
    [message] = issues(alias)
    assert message.id == "djpool.E003"
    assert "got 60" in message.msg


def test_w001_conn_max_age_none_pins_a_connection_per_thread(make_alias):
    alias = make_alias({"POOL_SIZE": 3, "MAX_OVERFLOW": 2, "LEAK_DETECTION": 60}, CONN_MAX_AGE=None)
    [message] = issues(alias)
    assert message.id == "djpool.W001"
    assert message.level == checks.WARNING
    assert "POOL_SIZE + MAX_OVERFLOW (5)" in message.msg
    assert "LEAK_DETECTION = 60 s" in message.hint


def test_w002_positive_conn_max_age(make_alias):
    alias = make_alias({}, CONN_MAX_AGE=30)
    assert ids(issues(alias)) == ["djpool.W002"]


def test_an_engine_that_cannot_be_imported_is_left_to_django(make_alias):
    alias = make_alias({"POOL_SIZE": 5}, ENGINE="djpool.backends.nosuchdb")
    assert issues(alias) == []


def test_w003_pool_options_on_a_stock_engine(make_alias, server):
    alias = make_alias({"POOL_SIZE": 5}, ENGINE=f"django.db.backends.{server.vendor}")
    [message] = issues(alias)
    assert message.id == "djpool.W003"
    assert f"ENGINE 'django.db.backends.{server.vendor}' is not a djpool backend" in message.msg


def test_manage_py_check_reports_through_the_installed_app(make_alias, djpool_app):
    alias = make_alias({"POOL_SIZE": "ten"})
    # --tag djpool: on Django 6 Django's own model checks connect to every
    # alias, and this one cannot connect (that is the point).
    with pytest.raises(SystemCheckError) as raised:
        call_command("check", tags=["djpool"])
    assert "(djpool.E001)" in str(raised.value)
    assert alias in str(raised.value)


# ##### Capacity, read from the server (--database) #####


def test_w004_host_total_above_max_connections(make_alias, server, workers):
    limit = server_max_connections(server)
    size = limit // 2 + 1
    alias = make_alias({"POOL_SIZE": size, "MAX_OVERFLOW": 0})
    workers("2")
    [message] = issues(alias, databases=[alias])
    assert message.id == "djpool.W004"
    # 'default' points at the same server and counts too.
    assert f"up to {2 * (size + default_limit())} connections" in message.msg
    assert f"more than its max_connections ({limit})" in message.msg
    assert "DJPOOL_WORKER_PROCESSES=2" in message.hint
    # The limit was read over a pooled connection of the alias, given back after.
    figures = registry.stats(alias)
    assert (figures["checkouts"], figures["checked_out"], figures["idle"]) == (1, 0, 1)


def test_w004_not_raised_when_the_host_fits(make_alias, server, workers):
    limit = server_max_connections(server)
    alias = make_alias({"POOL_SIZE": limit - default_limit(), "MAX_OVERFLOW": 0})
    assert issues(alias, databases=[alias]) == []  # one process (nothing set)
    workers("1")
    assert issues(alias, databases=[alias]) == []


def test_web_concurrency_counts_when_djpool_variable_is_unset(make_alias, server, workers):
    limit = server_max_connections(server)
    alias = make_alias({"POOL_SIZE": limit // 2 + 1, "MAX_OVERFLOW": 0})
    workers("3", name="WEB_CONCURRENCY")
    [message] = issues(alias, databases=[alias])
    assert "WEB_CONCURRENCY=3" in message.hint


def test_e004_invalid_worker_processes(make_alias, workers):
    alias = make_alias({})
    workers("four")
    messages = checks.run_checks(tags=["djpool"], databases=[alias])
    [message] = [m for m in messages if m.id == "djpool.E004"]
    assert message.msg == "The environment variable DJPOOL_WORKER_PROCESSES must be a whole number of 1 or more; got 'four'."


def test_w005_unbounded_overflow(make_alias, workers):
    alias = make_alias({"MAX_OVERFLOW": -1})
    assert ids(issues(alias, databases=[alias])) == ["djpool.W005"]


def test_w006_unreachable_server_shows_no_password(make_alias, workers):
    alias = make_alias({}, PORT=1, PASSWORD=SECRET)
    [message] = issues(alias, databases=[alias])
    assert message.id == "djpool.W006"
    assert "OperationalError" in message.msg
    assert SECRET not in message.msg + message.hint


def test_capacity_is_only_checked_with_database(make_alias, server, workers, monkeypatch):
    def fail(alias):
        raise AssertionError("connected without --database")

    monkeypatch.setattr(djpool_checks, "server_max_connections", fail)
    alias = make_alias({"POOL_SIZE": 500})
    workers("8")
    assert issues(alias) == []
