"""DATABASES entry → JDBC connection parameters, and the errors for bad values (no JVM needed)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from djpool.backends.jdbc.settings import jdbc_connection_params


def params(url_template="jdbc:x://{host}:{port}/{name}", **entry):
    return jdbc_connection_params(
        "db", entry, engine="E", default_driver="x.Driver", url_template=url_template, default_port=9
    )


def test_url_from_host_port_name_and_overrides():
    assert params(NAME="app", HOST="h", PORT=5)["url"] == "jdbc:x://h:5/app"
    assert params(NAME="app")["url"] == "jdbc:x://localhost:9/app"
    got = params(NAME="app", JDBC_URL="jdbc:h2:mem:a", JDBC_DRIVER="org.h2.Driver")
    assert (got["url"], got["driver"]) == ("jdbc:h2:mem:a", "org.h2.Driver")
    assert params(NAME="app")["driver"] == "x.Driver"


def test_properties_from_options_user_and_password():
    got = params(NAME="a", USER="u", PASSWORD="p", OPTIONS={"ssl": True, "loginTimeout": 5})
    assert got["properties"] == {"ssl": "true", "loginTimeout": "5", "user": "u", "password": "p"}


def test_class_path_forms():
    assert params(NAME="a", JDBC_CLASSPATH="/a.jar:/b.jar")["class_path"] == ("/a.jar", "/b.jar")
    assert params(NAME="a", JDBC_CLASSPATH=["/a.jar"])["class_path"] == ("/a.jar",)


@pytest.mark.parametrize(
    ("entry", "url_template", "message"),
    [
        ({}, None, "DATABASES['db']['JDBC_URL'] is required with ENGINE 'E'"),
        ({}, "jdbc:x:{name}", "DATABASES['db']['NAME'] is required"),
        (
            {"NAME": "a", "JDBC_BRIDGE": "jdbc"},
            "jdbc:x:{name}",
            "['JDBC_BRIDGE'] must be one of 'jpype', 'jaydebeapi'; got 'jdbc'",
        ),
        ({"NAME": "a", "JDBC_CLASSPATH": 5}, "jdbc:x:{name}", "['JDBC_CLASSPATH'] must be a path"),
        ({"NAME": "a", "OPTIONS": {"x": [1]}}, "jdbc:x:{name}", "['OPTIONS']['x'] is passed to the JDBC driver"),
        ({"JDBC_URL": "postgresql://u:secret@h/db"}, None, "['JDBC_URL'] must be a string starting with 'jdbc:'"),
    ],
)
def test_bad_settings(entry, url_template, message):
    with pytest.raises(ImproperlyConfigured) as info:
        params(url_template=url_template, **entry)
    assert message in str(info.value)
    assert "secret" not in str(info.value)


def test_engines_load_through_django():
    from django.db.utils import load_backend

    wrapper = load_backend("djpool.backends.jdbc").DatabaseWrapper
    assert wrapper.vendor == "jdbc"
    assert load_backend("djpool.backends.jdbc.oceanbase").DatabaseWrapper.jdbc_driver == "com.oceanbase.jdbc.Driver"
