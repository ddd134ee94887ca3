"""Whether a MySQL connection has a transaction open, as the server last said.

The server tells the client in the status flags of its answers
(``SERVER_STATUS_IN_TRANS``), a raw ``BEGIN`` included, whatever the
statement's text: the same flags that both drivers' ``get_autocommit()``
reads. PyMySQL keeps them as ``server_status``; mysqlclient does not expose
them, but MariaDB Connector/C (the client library Debian's and most Linux
distributions' mysqlclient is built on) gives them through
``mariadb_get_info()``, which takes the connection's ``MYSQL`` handle and
does no I/O; djpool calls it once per connection and then reads the field it
returns directly (:class:`_StatusField`). Where neither is there (mysqlclient
built on Oracle's libmysqlclient), :data:`mysqlclient_server_status` is None and djpool reads
the statements instead (``djpool_watch_transaction_statements``).

Reading the flags at a connection's return costs one call; watching the
statements costs one on every ``execute()``.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any, Callable

__all__ = [
    "SERVER_STATUS_AUTOCOMMIT",
    "SERVER_STATUS_IN_TRANS",
    "mysqlclient_in_transaction",
    "mysqlclient_server_status",
    "pymysql_in_transaction",
    "pymysql_server_status",
]

logger = logging.getLogger("djpool.backends.mysql")

#: mariadb_com.h: a transaction has started (and not ended).
SERVER_STATUS_IN_TRANS = 0x0001
#: mariadb_com.h: the session is in autocommit mode (what both drivers'
#: get_autocommit() read).
SERVER_STATUS_AUTOCOMMIT = 0x0002
#: mysql.h, enum mariadb_value: MARIADB_CONNECTION_SERVER_STATUS.
_MARIADB_CONNECTION_SERVER_STATUS = 30
#: The name mysqlclient gives the capsule of its MYSQL handle.
_CAPSULE_NAME = b"_mysql.connection.native_connection"


#: The flags that say whether a returned connection needs a rollback: any
#: state but "autocommit on, no transaction open" does. Django opens its
#: transactions by turning autocommit off; a raw BEGIN leaves it on and sets
#: "in transaction".
_TRANSACTION_FLAGS = SERVER_STATUS_IN_TRANS | SERVER_STATUS_AUTOCOMMIT


def pymysql_server_status(dbapi_connection: Any) -> int:
    """PyMySQL: the flags of the last OK packet (BEGIN, COMMIT and ROLLBACK all answer with one)."""
    return dbapi_connection.server_status or 0


def pymysql_in_transaction(dbapi_connection: Any) -> bool:
    """PyMySQL: whether the connection may have a transaction to roll back (read on every return)."""
    return (dbapi_connection.server_status or 0) & _TRANSACTION_FLAGS != SERVER_STATUS_AUTOCOMMIT


# MariaDB Connector/C's ``struct st_mysql`` (mysql.h) on LP64 platforms:
#
#     unsigned long thread_id;            <- found by its value
#     unsigned long packet_length;
#     unsigned int port;
#     unsigned long client_flag;
#     unsigned long server_capabilities;
#     unsigned int protocol_version;      thread_id + 40
#     unsigned int field_count;
#     unsigned int server_status;         thread_id + 48
_TO_PROTOCOL_VERSION = 40
_TO_SERVER_STATUS = 48


class _StatusField:
    """Finds ``server_status`` inside mysqlclient's ``MYSQL`` struct, so that reading it is a memory read.

    ``mariadb_get_info()`` reads the same field, but a foreign call through
    ctypes costs a request several microseconds once the request's other
    work has evicted libffi from the caches (measured in the benchmark's
    interleaved latency run: 4-6 % of a ``SELECT 1`` request). The field's
    offset is a fact of the client library's build: it is found once per
    process from values the connection reports without I/O (its thread id,
    the protocol version) and checked on every connection against
    ``mariadb_get_info()``; where a check fails, that connection keeps the
    call.
    """

    def __init__(self, native_size: int) -> None:
        #: The size of mysqlclient's C connection object, which holds the struct.
        self._native_size = native_size
        self._thread_id_offset: int | None = None

    def find(self, dbapi_connection: Any, handle: int, server_status: int) -> ctypes.c_uint | None:
        """The connection's ``server_status`` as a ``c_uint`` at its address, or None if not found for sure."""
        if ctypes.sizeof(ctypes.c_ulong) != 8:
            return None  # another layout (LLP64)
        thread_id = dbapi_connection.thread_id()
        protocol_version = dbapi_connection.get_proto_info()
        # Never read outside the connection object: the struct lies inside
        # it (a mysqlclient that allocated it elsewhere keeps the call).
        start, end = id(dbapi_connection), id(dbapi_connection) + self._native_size
        if not start < handle < end:
            return None
        last = end - handle - _TO_SERVER_STATUS - 4
        offset = self._thread_id_offset
        if offset is None or not self._matches(handle, offset, thread_id, protocol_version, server_status, last):
            offset = next(
                (
                    candidate
                    for candidate in range(0, last + 1, 8)
                    if self._matches(handle, candidate, thread_id, protocol_version, server_status, last)
                ),
                None,
            )
            if offset is None:
                return None
            self._thread_id_offset = offset
        return ctypes.c_uint.from_address(handle + offset + _TO_SERVER_STATUS)

    @staticmethod
    def _matches(handle: int, offset: int, thread_id: int, protocol_version: int, server_status: int, last: int) -> bool:
        return (
            0 <= offset <= last
            and ctypes.c_ulong.from_address(handle + offset).value == thread_id
            and ctypes.c_uint.from_address(handle + offset + _TO_PROTOCOL_VERSION).value == protocol_version
            and ctypes.c_uint.from_address(handle + offset + _TO_SERVER_STATUS).value == server_status
        )


class _GetInfoStatus:
    """One connection's ``server_status`` through ``mariadb_get_info()``, where its address was not found.

    Kept on the driver connection (a connection is used by one thread at a
    time, so the buffer is never shared).
    """

    __slots__ = ("get_info", "handle", "buffer", "pointer")

    def __init__(self, get_info: Callable[..., bytes], handle: int) -> None:
        self.get_info = get_info
        self.handle = ctypes.c_void_p(handle)
        self.buffer = ctypes.c_uint(0)
        self.pointer = ctypes.pointer(self.buffer)

    @property
    def value(self) -> int:
        if self.get_info(self.handle, _MARIADB_CONNECTION_SERVER_STATUS, self.pointer) == _FAILED:
            return SERVER_STATUS_IN_TRANS  # cannot happen once it succeeded; roll back if it does
        return self.buffer.value


#: my_bool 1: mariadb_get_info() failed.
_FAILED = b"\x01"
#: Stands in for the status where the library cannot report it: a
#: transaction may be open, so every return rolls back.
_UNKNOWN = ctypes.c_uint(SERVER_STATUS_IN_TRANS | SERVER_STATUS_AUTOCOMMIT)


def _mysqlclient_readers() -> tuple[Callable[[Any], int], Callable[[Any], bool]] | tuple[None, None]:
    """mysqlclient's ``(connection) -> flags`` and ``(connection) -> in a transaction``, from its client library's ``server_status``; None where it cannot tell."""
    try:
        from MySQLdb import _mysql

        # PyDLL: the call keeps the GIL (it only reads a field), and dlsym on
        # the extension's handle finds the symbol in the library it links to.
        get_info = ctypes.PyDLL(_mysql.__file__).mariadb_get_info
    except (ImportError, OSError, AttributeError):
        return None, None
    get_info.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_uint))
    get_info.restype = ctypes.c_char  # my_bool: 0 on success
    # A function object of its own: ctypes.pythonapi's is shared with any other user.
    capsule_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
    status_field = _StatusField(_mysql.connection.__basicsize__)
    warned: list[bool] = []

    def field_of(dbapi_connection: Any) -> Any:
        handle = capsule_pointer(dbapi_connection._get_native_connection(), _CAPSULE_NAME)
        reading = _GetInfoStatus(get_info, handle)
        if get_info(reading.handle, _MARIADB_CONNECTION_SERVER_STATUS, reading.pointer) == _FAILED:
            # A client library too old to report the status.
            if not warned:
                warned.append(True)
                logger.warning(
                    "mysqlclient's client library does not report the server status "
                    "(mariadb_get_info(MARIADB_CONNECTION_SERVER_STATUS) failed): every "
                    "connection returned to the pool is rolled back, a round trip each"
                )
            return _UNKNOWN
        field = status_field.find(dbapi_connection, handle, reading.buffer.value)
        return reading if field is None else field  # (a c_uint of 0 is false)

    def server_status(dbapi_connection: Any) -> int:
        try:
            field = dbapi_connection._djpool_server_status
        except AttributeError:
            field = dbapi_connection._djpool_server_status = field_of(dbapi_connection)
        return field.value  # type: ignore[no-any-return]

    def in_transaction(dbapi_connection: Any) -> bool:
        # server_status(), inline: every return asks.
        try:
            field = dbapi_connection._djpool_server_status
        except AttributeError:
            field = dbapi_connection._djpool_server_status = field_of(dbapi_connection)
        return field.value & _TRANSACTION_FLAGS != SERVER_STATUS_AUTOCOMMIT  # type: ignore[no-any-return]

    return server_status, in_transaction


#: mysqlclient's reading of the flags, and whether a returned connection
#: may have a transaction to roll back; None where its client library
#: cannot tell.
mysqlclient_server_status, mysqlclient_in_transaction = _mysqlclient_readers()
