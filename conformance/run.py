"""Run Django's own test suite with djpool's ENGINEs and with Django's, and compare.

For each backend asked for, this script

1. downloads the source distribution of the installed Django from the package
   index (``pip download --no-deps --no-binary :all: django==<version>``) and
   unpacks it into a cache directory;
2. creates a database user for this run on the server (so what the run leaves
   open can be counted on the server, apart from everyone else's sessions);
3. writes a settings module with ``default`` and ``other`` databases, test
   database names unique to the run, and a TEST_RUNNER that records each
   outcome (``djpool_conformance_runner.py``);
4. runs ``tests/runtests.py`` on the chosen labels with the stock ENGINE and
   with the djpool ENGINE (``--parallel N``, which forks workers, and
   optionally serially);
5. prints both side by side and exits non-zero if a pooled run has a failure
   or error that the stock run with the same parallelism does not have and
   that ``known_differences.toml`` does not list, or if a run left sessions
   open on the server.

Usage (see conformance/README.md)::

    python conformance/run.py --backend postgresql --backend mysql
    python conformance/run.py --backend postgresql --mode transaction --serial postgresql
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = None

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# Labels that exercise connections, transactions, threads and forks.
DEFAULT_LABELS = (
    "backends",
    "transactions",
    "transaction_hooks",
    "basic",
    "queries",
    "select_for_update",
    "get_or_create",
    "bulk_create",
    "update",
    "delete",
    "model_fields",
    "migrations",
    "schema",
    "test_utils",
    "servers",
    "handlers",
    "async",
)

ENGINES = {
    "postgresql": {"stock": "django.db.backends.postgresql", "pooled": "djpool.backends.postgresql"},
    "mysql": {"stock": "django.db.backends.mysql", "pooled": "djpool.backends.mysql"},
}
SERVERS = {
    "postgresql": {"host": "127.0.0.1", "port": 5432, "admin_user": "postgres"},
    "mysql": {"host": "127.0.0.1", "port": 3306, "admin_user": "root"},
}
FAILING = {"fail", "error", "unexpected-success"}
SEVERITY = {"error": 5, "fail": 4, "unexpected-success": 3, "expected-failure": 2, "ok": 1, "skip": 0}


def log(message: str) -> None:
    print(message, flush=True)


# ##### Django's test suite #####


def fetch_django_tests(cache: Path) -> Path:
    """Return the ``tests`` directory of the installed Django's source distribution."""
    import django

    version = django.get_version()
    target = cache / f"django-{version}"
    if (target / "tests" / "runtests.py").exists():
        return target / "tests"
    cache.mkdir(parents=True, exist_ok=True)
    log(f"Downloading the source distribution of Django {version} ...")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
         "--no-deps", "--no-binary", ":all:", f"django=={version}", "--dest", str(cache)],
        check=True,
    )
    # Older sdists are named "Django-<version>.tar.gz".
    archives = [p for p in cache.iterdir() if p.name.lower() == f"django-{version}.tar.gz"]
    if not archives:
        raise SystemExit(f"pip download left no django-{version}.tar.gz in {cache}")
    unpack = Path(tempfile.mkdtemp(dir=cache))
    with tarfile.open(archives[0]) as archive:
        if sys.version_info >= (3, 12):
            archive.extractall(unpack, filter="data")
        else:  # pragma: no cover
            archive.extractall(unpack)
    (top,) = unpack.iterdir()  # django-<version>/ (Django-<version>/ in older sdists)
    top.rename(target)
    shutil.rmtree(unpack)
    return target / "tests"


# ##### Servers #####


@dataclasses.dataclass
class Server:
    """Admin access to one server: the run's user, session counts, cleanup."""

    backend: str
    host: str
    port: int
    admin_user: str

    def _execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.backend == "postgresql":
            from djpool_conformance_runner import postgres_rows  # beside this script

            return postgres_rows(self.host, self.port, self.admin_user, sql, params)
        import MySQLdb

        connection = MySQLdb.connect(host=self.host, port=self.port, user=self.admin_user, passwd="")
        try:
            cursor = connection.cursor()
            cursor.execute(sql, params or None)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def create_user(self, name: str) -> None:
        if self.backend == "postgresql":
            self._execute(f'CREATE ROLE "{name}" LOGIN SUPERUSER')
        else:
            for host in ("localhost", "127.0.0.1", "%"):
                self._execute(f"CREATE USER '{name}'@'{host}'")
                self._execute(f"GRANT ALL PRIVILEGES ON *.* TO '{name}'@'{host}' WITH GRANT OPTION")

    def drop_user(self, name: str) -> None:
        if self.backend == "postgresql":
            self._execute(f'DROP ROLE IF EXISTS "{name}"')
        else:
            for host in ("localhost", "127.0.0.1", "%"):
                self._execute(f"DROP USER IF EXISTS '{name}'@'{host}'")

    def sessions(self, user: str, db_prefix: str) -> list[tuple[Any, ...]]:
        like = db_prefix.replace("_", "\\_") + "%"
        if self.backend == "postgresql":
            return self._execute(
                "SELECT pid, usename, datname, state FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND (usename = %s OR datname LIKE %s)",
                (user, like),
            )
        return self._execute(
            "SELECT ID, USER, DB, COMMAND FROM information_schema.PROCESSLIST"
            " WHERE ID <> CONNECTION_ID() AND (USER = %s OR DB LIKE %s)",
            (user, like),
        )

    def kill_sessions(self, user: str, db_prefix: str) -> None:
        for row in self.sessions(user, db_prefix):
            try:
                if self.backend == "postgresql":
                    self._execute("SELECT pg_terminate_backend(%s)", (row[0],))
                else:
                    self._execute(f"KILL {int(row[0])}")
            except Exception:
                pass

    def databases(self, db_prefix: str) -> list[str]:
        like = db_prefix.replace("_", "\\_") + "%"
        if self.backend == "postgresql":
            rows = self._execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like,))
        else:
            rows = self._execute(
                "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s", (like,)
            )
        return [row[0] for row in rows]

    def drop_database(self, name: str) -> None:
        if self.backend == "postgresql":
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            self._execute(f"DROP DATABASE IF EXISTS `{name}`")


# ##### One run of runtests.py #####


@dataclasses.dataclass
class Run:
    backend: str
    flavour: str  # "stock" or "pooled"
    mode: str  # POOL_MODE of a pooled run; "-" for stock
    parallel: int
    outcomes: dict[str, str] = dataclasses.field(default_factory=dict)
    details: dict[str, str] = dataclasses.field(default_factory=dict)
    leftover: list[Any] = dataclasses.field(default_factory=list)
    leftover_after_exit: list[Any] = dataclasses.field(default_factory=list)
    leftover_databases: list[str] = dataclasses.field(default_factory=list)
    duration: float = 0.0
    returncode: int | None = None
    complete: bool = False
    log_path: Path | None = None
    engines: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        mode = f"-{self.mode}" if self.flavour == "pooled" else ""
        return f"{self.backend}-{self.flavour}{mode}-parallel{self.parallel}"

    @property
    def failing(self) -> dict[str, str]:
        return {test: outcome for test, outcome in self.outcomes.items() if outcome in FAILING}

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.outcomes.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts


def settings_module(run: Run, db_prefix: str, user: str, server: Server) -> str:
    engine = ENGINES[run.backend][run.flavour]

    def database(suffix: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ENGINE": engine,
            "NAME": f"{db_prefix}_{suffix}",
            "USER": user,
            "PASSWORD": "",
            "HOST": server.host,
            "PORT": server.port,
            "TEST": {"NAME": f"{db_prefix}_test_{suffix}"},
        }
        if run.backend == "mysql":
            entry["TEST"].update({"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_general_ci"})
        if run.flavour == "pooled":
            entry["POOL_OPTIONS"] = {"POOL_MODE": run.mode}
        return entry

    databases = {"default": database("default"), "other": database("other")}
    return (
        '"""Generated by djpool\'s conformance/run.py for one run; do not edit."""\n'
        "from test_sqlite import *  # noqa: F401,F403 (Django's own test settings)\n\n"
        f"DATABASES = {databases!r}\n"
        'TEST_RUNNER = "djpool_conformance_runner.RecordingRunner"\n'
    )


def execute(run: Run, tests_dir: Path, labels: list[str], work: Path, server: Server, user: str,
            db_prefix: str, verbosity: int, timeout: float) -> None:
    run_dir = work / run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "djpool_conformance_settings.py").write_text(settings_module(run, db_prefix, user, server))
    results = run_dir / "results.jsonl"
    results.unlink(missing_ok=True)
    run.log_path = run_dir / "output.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(run_dir), str(HERE)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    env["DJPOOL_CONFORMANCE_RESULTS"] = str(results)
    env["DJPOOL_CONFORMANCE_SERVER"] = json.dumps(
        {"backend": run.backend, "host": server.host, "port": server.port,
         "admin_user": server.admin_user, "run_user": user, "db_prefix": db_prefix}
    )
    env.setdefault("PYTHONHASHSEED", "0")
    command = [sys.executable, "runtests.py", "--settings", "djpool_conformance_settings",
               "--noinput", f"--parallel={run.parallel}", f"-v{verbosity}", *labels]
    log(f"--> {run.name}: {' '.join(command[1:4])} ... ({len(labels)} labels)")
    started = time.monotonic()
    with open(run.log_path, "w", encoding="utf-8") as output:
        process = subprocess.Popen(command, cwd=tests_dir, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            run.returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            log(f"    {run.name}: killed after {timeout:.0f} s")
    run.duration = time.monotonic() - started
    if results.exists():
        for line in results.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "leftover_sessions" in record:
                run.leftover = record["leftover_sessions"]
                run.engines = record.get("engines", {})
                run.complete = True
                continue
            test, outcome = record["id"], record["outcome"]
            if SEVERITY[outcome] >= SEVERITY.get(run.outcomes.get(test, "skip"), 0):
                run.outcomes[test] = outcome
                if "detail" in record:
                    run.details[test] = record["detail"]
    # The process is gone: anything still on the server outlived it.
    time.sleep(0.5)
    run.leftover_after_exit = server.sessions(user, db_prefix)
    if run.leftover_after_exit:
        server.kill_sessions(user, db_prefix)
    run.leftover_databases = server.databases(db_prefix)
    for name in run.leftover_databases:
        server.drop_database(name)
    counts = run.counts()
    log(
        f"    {run.name}: {len(run.outcomes)} tests, {counts.get('fail', 0)} failures, "
        f"{counts.get('error', 0)} errors, {counts.get('skip', 0)} skipped in {run.duration:.0f} s "
        f"(exit {run.returncode}{'' if run.complete else ', INCOMPLETE'}; log {run.log_path})"
    )


# ##### Known differences and the comparison #####


@dataclasses.dataclass
class KnownDifference:
    test: str
    reason: str
    backends: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()
    django: tuple[str, ...] = ()
    parallel: str = "any"  # "any", "serial" or "parallel"

    def matches(self, test: str, run: Run, django_version: str) -> bool:
        if self.backends and run.backend not in self.backends:
            return False
        if self.modes and run.mode not in self.modes:
            return False
        if self.django and not any(django_version.startswith(v) for v in self.django):
            return False
        if self.parallel == "serial" and run.parallel > 1 or self.parallel == "parallel" and run.parallel <= 1:
            return False
        return fnmatch.fnmatchcase(test, self.test)


def load_known_differences(path: Path) -> list[KnownDifference]:
    if not path.exists() or tomllib is None:
        return []
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    known = []
    for entry in data.get("difference", []):
        known.append(
            KnownDifference(
                test=entry["test"],
                reason=entry["reason"],
                backends=tuple(entry.get("backends", ())),
                modes=tuple(entry.get("modes", ())),
                django=tuple(entry.get("django", ())),
                parallel=entry.get("parallel", "any"),
            )
        )
    return known


def compare(
    stock: Run, pooled: Run, known: list[KnownDifference], django_version: str, used: set[int]
) -> list[str]:
    """Print the two runs side by side; return the problems that fail the job."""
    problems: list[str] = []
    log("")
    log(f"=== {pooled.name} vs {stock.name} (Django {django_version})")
    log(f"    {'':<12}{'stock':>10}{'pooled':>10}")
    for label, key in (("tests", None), ("ok", "ok"), ("failures", "fail"), ("errors", "error"),
                       ("skipped", "skip"), ("xfail", "expected-failure")):
        values = [len(run.outcomes) if key is None else run.counts().get(key, 0) for run in (stock, pooled)]
        log(f"    {label:<12}{values[0]:>10}{values[1]:>10}")
    log(f"    {'seconds':<12}{stock.duration:>10.0f}{pooled.duration:>10.0f}")
    log(f"    {'sessions left':<12}{len(stock.leftover):>9}{len(pooled.leftover):>10}")
    for run in (stock, pooled):
        if not run.complete:
            problems.append(f"{run.name}: did not finish (exit {run.returncode}); see {run.log_path}")
        if run.leftover:
            problems.append(f"{run.name}: {len(run.leftover)} session(s) still open after the test run: {run.leftover}")
        if run.leftover_after_exit:
            problems.append(f"{run.name}: {len(run.leftover_after_exit)} session(s) outlived the test process")
        expected = ENGINES[run.backend][run.flavour] + ".base"
        wrong = {alias: module for alias, module in run.engines.items() if module != expected}
        if run.complete and wrong:
            problems.append(f"{run.name}: ran with {wrong}, not {expected}")
        if run.leftover_databases:
            problems.append(f"{run.name}: left databases behind: {run.leftover_databases}")
    tests = sorted(set(stock.failing) | set(pooled.failing))
    if tests:
        log(f"    {'test':<100} {'stock':>8} {'pooled':>8}  verdict")
    for test in tests:
        in_stock = stock.outcomes.get(test, "-")
        in_pooled = pooled.outcomes.get(test, "-")
        if test not in pooled.failing:
            verdict = "stock only"
        elif test in stock.failing:
            verdict = "both"
        else:
            match = next((i for i, k in enumerate(known) if k.matches(test, pooled, django_version)), None)
            if match is not None:
                used.add(match)
                verdict = f"KNOWN: {known[match].reason}"
            else:
                verdict = "POOLED ONLY"
                problems.append(f"{pooled.name}: {test} {in_pooled} (stock: {in_stock})")
        log(f"    {test:<100} {in_stock:>8} {in_pooled:>8}  {verdict}")
    for test in tests:
        if test in pooled.failing and test not in stock.failing and test in pooled.details:
            log(f"\n--- {pooled.name}: {test}\n{pooled.details[test]}")
    return problems


# ##### Main #####


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=sorted(ENGINES),
                        help="server to run against (repeat for several; default: postgresql)")
    parser.add_argument("--mode", action="append", choices=["session", "transaction"],
                        help="POOL_MODE of the pooled runs (repeat for several; default: session)")
    parser.add_argument("--parallel", type=int, default=2,
                        help="runtests.py --parallel for the main runs (default 2; 1 = serial)")
    parser.add_argument("--serial", action="append", default=[], choices=sorted(ENGINES), metavar="BACKEND",
                        help="also run pooled and stock without --parallel on this backend "
                             "(session mode; repeat for several)")
    parser.add_argument("--extras-django", metavar="VERSION",
                        help="run the extra runs (modes other than the first, --serial) only when the "
                             "installed Django version starts with VERSION, e.g. 5.2; with a hatch matrix "
                             "this keeps them to one Django version")
    parser.add_argument("--only-pooled", action="store_true",
                        help="skip the stock runs (no comparison; for debugging)")
    parser.add_argument("--label", action="append", dest="labels",
                        help="test label (repeat; default: the conformance set)")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("DJPOOL_CONFORMANCE_CACHE",
                                                    Path(tempfile.gettempdir()) / "djpool-conformance")),
                        help="where Django's source is downloaded and runs write their logs")
    parser.add_argument("--known", type=Path, default=HERE / "known_differences.toml")
    parser.add_argument("--verbosity", type=int, default=1, help="runtests.py -v (default 1)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds before one run is killed")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import django

    django_version = django.get_version()
    backends = args.backend or ["postgresql"]
    modes = args.mode or ["session"]
    serial = args.serial
    if args.extras_django and not (django_version + ".").startswith(args.extras_django.rstrip(".") + "."):
        log(f"Django {django_version}: extra runs are for Django {args.extras_django} only; "
            f"running POOL_MODE={modes[0]!r} with --parallel {args.parallel}")
        modes, serial = modes[:1], []
    labels = args.labels or list(DEFAULT_LABELS)
    known = load_known_differences(args.known)
    tests_dir = fetch_django_tests(args.cache)
    work = Path(tempfile.mkdtemp(prefix=f"runs-{django_version}-", dir=args.cache))
    log(f"Django {django_version} (tests from {tests_dir}), Python {sys.version.split()[0]}; logs in {work}")

    problems: list[str] = []
    used: set[int] = set()
    durations: list[tuple[str, float]] = []
    started = time.monotonic()
    counter = 0
    for backend in backends:
        server = Server(backend, **SERVERS[backend])
        user = f"djpool_conf_{os.getpid()}"
        server.create_user(user)
        try:
            plan: list[tuple[Run | None, Run]] = []
            parallelisms = [args.parallel] + ([1] if backend in serial and args.parallel != 1 else [])
            for parallel in parallelisms:
                stock = None if args.only_pooled else Run(backend, "stock", "-", parallel)
                for mode in modes if parallel == args.parallel else ["session"]:
                    plan.append((stock, Run(backend, "pooled", mode, parallel)))
            executed: set[int] = set()
            for stock, pooled in plan:
                for run in (stock, pooled):
                    if run is None or id(run) in executed:
                        continue
                    executed.add(id(run))
                    counter += 1
                    execute(run, tests_dir, labels, work, server, user, f"djpool_conf_{os.getpid()}_{counter}",
                            args.verbosity, args.timeout)
                    durations.append((run.name, run.duration))
            for stock, pooled in plan:
                if stock is None:
                    problems.extend(
                        f"{pooled.name}: {test} {outcome}" for test, outcome in sorted(pooled.failing.items())
                    )
                    continue
                problems.extend(compare(stock, pooled, known, django_version, used))
        finally:
            server.kill_sessions(user, f"djpool_conf_{os.getpid()}_")
            server.drop_user(user)

    log("")
    log(f"=== Durations (Django {django_version})")
    for name, seconds in durations:
        log(f"    {name:<50} {seconds:>6.0f} s")
    log(f"    {'total':<50} {time.monotonic() - started:>6.0f} s")
    stale = [entry for i, entry in enumerate(known) if i not in used]
    if stale and not args.labels:
        log("")
        log("=== Known differences that did not occur in these runs (other backend, mode or Django, or fixed):")
        for entry in stale:
            log(f"    {entry.test}")
    if problems:
        log("")
        log(f"=== FAILED: {len(problems)} problem(s)")
        for problem in problems:
            log(f"    {problem}")
        return 1
    log("")
    log("=== OK: every pooled run matches the stock run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
