"""A DATABASES entry's JDBC settings: validated, with the vendor's defaults filled in.

Keys read, besides Django's own: ``JDBC_URL`` (the whole URL, overriding
HOST/PORT/NAME), ``JDBC_DRIVER`` (driver class), ``JDBC_CLASSPATH`` (jar
path or list of paths for the JVM, added to ``CLASSPATH``) and
``JDBC_BRIDGE`` (``"jpype"`` or ``"jaydebeapi"``). ``OPTIONS`` become JDBC
driver properties; ``USER`` and ``PASSWORD`` the ``user`` and ``password``
properties.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from djpool.backends.jdbc.bridges import BRIDGES

__all__ = ["jdbc_connection_params"]


def _where(alias: str) -> str:
    return f"DATABASES[{alias!r}]"


def _class_path(alias: str, value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, os.PathLike)):
        return [entry for entry in os.fspath(value).split(os.pathsep) if entry]
    if isinstance(value, (list, tuple)) and all(isinstance(entry, (str, os.PathLike)) for entry in value):
        return [os.fspath(entry) for entry in value]
    raise ImproperlyConfigured(
        f"{_where(alias)}['JDBC_CLASSPATH'] must be a path, a {os.pathsep!r}-separated string of "
        f"paths, or a list of paths; got {value!r} ({type(value).__name__})."
    )


def _property(alias: str, key: Any, value: Any) -> str:
    if not isinstance(key, str):
        raise ImproperlyConfigured(
            f"{_where(alias)}['OPTIONS'] keys must be strings (JDBC driver properties); got {key!r}."
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ImproperlyConfigured(
        f"{_where(alias)}['OPTIONS'][{key!r}] is passed to the JDBC driver as a property and must "
        f"be a string, number or bool; got a {type(value).__name__}."
    )


def jdbc_connection_params(
    alias: str,
    settings_dict: Mapping[str, Any],
    *,
    engine: str,
    default_driver: str | None,
    url_template: str | None,
    default_port: int | None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of :func:`djpool.backends.jdbc.dbapi.connect` for one database.

    ``url_template`` uses ``{host}``, ``{port}`` and ``{name}``; None means
    the ENGINE has no URL scheme of its own and ``JDBC_URL`` is required.
    ``options`` are the driver properties (default: the entry's OPTIONS),
    for backends that take some OPTIONS for themselves.
    """
    where = _where(alias)
    url = settings_dict.get("JDBC_URL")
    if url is not None and (not isinstance(url, str) or not url.startswith("jdbc:")):
        raise ImproperlyConfigured(
            f"{where}['JDBC_URL'] must be a string starting with 'jdbc:'; got a {type(url).__name__} value."
        )
    if not url:
        if url_template is None:
            raise ImproperlyConfigured(
                f"{where}['JDBC_URL'] is required with ENGINE {engine!r}: the JDBC URL of the database, "
                f"e.g. 'jdbc:postgresql://db.internal:5432/app' (and JDBC_DRIVER, the driver class)."
            )
        name = settings_dict.get("NAME")
        if not name:
            raise ImproperlyConfigured(
                f"{where}['NAME'] is required with ENGINE {engine!r} (or give the whole URL as JDBC_URL)."
            )
        url = url_template.format(
            host=settings_dict.get("HOST") or "localhost",
            port=settings_dict.get("PORT") or default_port,
            name=name,
        )
    driver = settings_dict.get("JDBC_DRIVER") or default_driver
    if driver is not None and not isinstance(driver, str):
        raise ImproperlyConfigured(f"{where}['JDBC_DRIVER'] must be a Java class name; got {driver!r}.")
    bridge = settings_dict.get("JDBC_BRIDGE") or "jpype"
    if bridge not in BRIDGES:
        raise ImproperlyConfigured(
            f"{where}['JDBC_BRIDGE'] must be one of {', '.join(repr(b) for b in BRIDGES)}; got {bridge!r}."
        )
    properties = {
        key: _property(alias, key, value)
        for key, value in (settings_dict.get("OPTIONS") or {} if options is None else options).items()
    }
    if settings_dict.get("USER"):
        properties["user"] = str(settings_dict["USER"])
    if settings_dict.get("PASSWORD"):
        properties["password"] = str(settings_dict["PASSWORD"])
    return {
        "url": url,
        "driver": driver,
        "properties": properties,
        "class_path": tuple(_class_path(alias, settings_dict.get("JDBC_CLASSPATH"))),
        "bridge": bridge,
        "where": where,
    }
