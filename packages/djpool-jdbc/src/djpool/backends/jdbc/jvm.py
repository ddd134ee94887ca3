"""The process's Java virtual machine: started once, lazily, with the drivers on its class path.

A JVM cannot be stopped and started again in one process, and its class path
is fixed when it starts. So the first JDBC connection starts it with every
class path entry known by then (the ``CLASSPATH`` environment variable plus
the ``JDBC_CLASSPATH`` of the database being connected), and later
connections can only check that their driver is there.

The JVM's default time zone is pinned to UTC: JDBC reads and writes
``java.sql.Timestamp`` values in that zone, and Django hands the MySQL and
Oracle backends naive UTC datetimes. With the host's zone (say
America/New_York) ``2024-03-10 02:30`` would be stored as ``03:30``.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = ["start_jvm", "load_driver", "attach_thread", "class_path"]

logger = logging.getLogger("djpool.jdbc")

JVM_OPTIONS = ("-Duser.timezone=UTC",)

_lock = threading.Lock()
_started_here = False
# The process the JVM was started in: a forked child has its memory but none
# of its threads, and a Java call there hangs.
_jvm_pid: int | None = None


def _jpype() -> Any:
    try:
        import jpype
    except ImportError:
        raise ImproperlyConfigured(
            "The djpool JDBC backends need JPype1 to run Java: "
            "pip install 'djpool-jdbc[jpype]' (or 'djpool-jdbc[jaydebeapi]')."
        ) from None
    return jpype


def class_path() -> list[str]:
    """The running JVM's class path entries (empty if no JVM runs)."""
    jpype = _jpype()
    if not jpype.isJVMStarted():
        return []
    value = str(jpype.java.lang.System.getProperty("java.class.path") or "")
    return [entry for entry in value.split(os.pathsep) if entry]


def start_jvm(extra_class_path: Iterable[str] = ()) -> None:
    """Start the JVM if no one has yet (thread-safe).

    ``extra_class_path`` entries (jar files, directories, ``dir/*``) are
    added to what ``CLASSPATH`` holds. When the JVM already runs, entries it
    lacks are logged: they can no longer be added.
    """
    global _started_here, _jvm_pid
    jpype = _jpype()
    extra = [str(entry) for entry in extra_class_path]
    if _jvm_pid is not None and _jvm_pid != os.getpid():
        raise ImproperlyConfigured(
            f"djpool JDBC: this process was forked from process {_jvm_pid} after that one started "
            "its Java virtual machine, and a JVM does not survive fork(). Open the first JDBC "
            "connection in the worker processes (gunicorn without --preload, uWSGI lazy-apps)."
        )
    if not jpype.isJVMStarted():
        with _lock:
            if not jpype.isJVMStarted():
                for entry in extra:
                    jpype.addClassPath(entry)
                try:
                    jvm_path = jpype.getDefaultJVMPath()
                except jpype.JVMNotFoundException as error:
                    java_home = os.environ.get("JAVA_HOME")
                    raise ImproperlyConfigured(
                        "djpool JDBC: no Java virtual machine found. Searched "
                        + (f"JAVA_HOME={java_home!r} and " if java_home else "JAVA_HOME (not set), ")
                        + "the default JVM locations. Install a Java runtime (Debian: "
                        "apt-get install default-jre-headless) or set JAVA_HOME to a JDK/JRE "
                        f"directory. ({error})"
                    ) from None
                jpype.startJVM(jvm_path, *JVM_OPTIONS, convertStrings=False)
                _started_here = True
                _jvm_pid = os.getpid()
                if threading.current_thread() is not threading.main_thread():
                    # The starting thread is attached as a user (non-daemon)
                    # thread; once it ends, the JVM, and so the interpreter,
                    # would wait for it forever at exit.
                    jpype.java.lang.Thread.detach()
                    jpype.java.lang.Thread.attachAsDaemon()
                logger.info("Started the JVM (%s) with %d class path entries", jvm_path, len(class_path()))
                return
    if extra:
        missing = [entry for entry in extra if entry not in class_path()]
        if missing:
            logger.warning(
                "The JVM was already running, so these JDBC_CLASSPATH entries could not be added: %s",
                os.pathsep.join(missing),
            )
    if not _started_here:
        zone = str(jpype.java.util.TimeZone.getDefault().getID())
        if zone != "UTC":
            logger.warning(
                "The JVM was started before djpool with the time zone %s; JDBC timestamps are "
                "converted in that zone. Start it with -Duser.timezone=UTC.",
                zone,
            )


def attach_thread() -> None:
    """Attach the calling thread to the JVM as a daemon thread.

    A thread attached as a non-daemon Java thread (what JayDeBeApi's
    ``attachThreadToJVM()`` does) keeps the JVM, and so the interpreter, from
    exiting after the thread ends. Attaching first makes later attach calls
    no-ops.
    """
    jpype = _jpype()
    thread = jpype.java.lang.Thread
    if not thread.isAttached():
        thread.attachAsDaemon()


def load_driver(driver: str, where: str) -> None:
    """Load and register the JDBC driver class, or say where it was looked for.

    ``where`` names the setting in messages, e.g. ``DATABASES['default']``.
    """
    jpype = _jpype()
    try:
        # The loader JPype gives the class path to (the one jpype.dbapi2 uses).
        loader = importlib.import_module("_jpype").JPypeClassLoader
        jpype.JClass("java.lang.Class").forName(driver, True, loader)
    except jpype.JException as error:
        if "ClassNotFoundException" not in str(error.getClass().getName()):
            raise
        entries = class_path()
        raise ImproperlyConfigured(
            f"{where}: JDBC driver class {driver!r} not found. The JVM's class path is "
            + (os.pathsep.join(entries) if entries else "empty")
            + ". Put the driver's jar on it: set the CLASSPATH environment variable, or "
            f"{where}['JDBC_CLASSPATH'] (a path or a list of paths), before the first JDBC "
            f"connection of the process; or set {where}['JDBC_DRIVER'] to a driver that is there."
        ) from None
