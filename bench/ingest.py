"""Benchmark Track API ingestion over HTTP (gunicorn + PostgreSQL) against a raw-SQL floor.

Run it by hand from the repository root (wrk from Debian must be installed:
``apt-get install -y wrk``; gunicorn is a project dependency; ``--profile`` needs
``.venv/bin/pip install py-spy``):

    .venv/bin/python bench/ingest.py                                  # defaults below
    .venv/bin/python bench/ingest.py --duration 25 --connections 32 \
        --servers sync:2,sync:4,sync:8,gthread:4x4 --profile /tmp/engage-profile
    .venv/bin/python bench/ingest.py --duration 5 --servers sync:2 --floor-rows 20000  # quick
    .venv/bin/python bench/ingest.py --servers sync:4 --synchronous-commit off \
        --no-yardstick --floor-rows 0                      # diagnostic: cost of fsync at COMMIT

The full run above takes about 20 minutes on an idle 2-core machine. The machine may be
shared: before each run the script waits (up to ``--max-wait`` s) until the CPU is idle,
reports the CPU that other work took during the run ("others"), and runs a scenario
again (``--retries``) when that exceeds ``--disturbed`` cores.

What it does:

1. drops and recreates the database ``engage_ingest_bench`` on 127.0.0.1:5432 (user
   postgres; never any other database), runs ``manage.py migrate`` and creates an
   ``email_or_id`` workspace with ``engage.services.create_workspace``;
2. counts the SQL statements one request of each kind runs (in-process, Django's
   ``CaptureQueriesContext``, the same view code gunicorn runs);
3. for each server configuration in ``--servers`` (``sync:N`` = N sync workers,
   ``gthread:NxT`` = N gthread workers of T threads), empties the people tables, starts
   ``gunicorn engage.wsgi:application`` on a listening socket this script bound to
   127.0.0.1 port 0 (handed over as ``fd://``), with DEBUG off, a SECRET_KEY and
   persistent connections (CONN_MAX_AGE), warms it up, and drives it with wrk over
   loopback, one scenario after another, each ``--duration`` seconds with
   ``--connections`` connections:

   * ``v1-identify-create``  PUT /api/v1/customers/{id}, a new id (and email) every time;
   * ``v1-identify-update``  PUT on the ids just created, changing two attributes;
   * ``v1-event``            POST /api/v1/customers/{id}/events for those ids;
   * ``v2-batch``            POST /api/v2/batch, 100 operations a request: 50 identify of
                              new people and 50 events of 50 other existing people;
   * ``v1-auth-only``        GET /api/v1/accounts/region: a yardstick, not a goal: what a
                              Track request costs that authenticates and writes nothing.

   After the first configuration, the same gunicorn configuration serves
   ``plain_wsgi_app`` (no Django, no database) under the same load: what gunicorn alone
   costs (skip it with ``--no-yardstick``).

   Each run reports requests/s (operations/s for the batch), p50/p99/max latency (wrk's
   histogram), non-200 answers, the rows that reached PostgreSQL, and the CPU each side
   used (gunicorn, PostgreSQL, wrk, from /proc) in cores;
4. stops gunicorn, and measures the raw-SQL floor: the same rows written straight into
   PostgreSQL (same tables and indexes) on one connection, with COPY (the data rendered
   before the clock starts) and with multi-row INSERTs of 100 rows a transaction, and
   the batch rows once more as two COPY streams on two connections;
5. prints the figures as Markdown tables, and as JSON with ``--json PATH``.

``--profile DIR`` adds, after the measured runs of the first server configuration, a
short run of each scenario under ``py-spy record --idle --subprocesses`` and writes
collapsed stacks to DIR with a summary of where the workers spend their wall time
(those runs are slowed by the sampling and are not the headline figures).

Traffic goes only to 127.0.0.1; every wrk run is bounded by ``--duration`` and stops by
itself. gunicorn (and a wrk still running) are stopped at the end, also on an error or
Ctrl-C.
"""

import argparse
import base64
import json
import os
import platform
import pwd
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The repository's root in place of this script's folder, whose scripts are named like
# the apps and the standard library's modules (``segments``, ``campaigns``).
sys.path[0] = str(REPO_ROOT)

from bench import common  # noqa: E402

VENV_BIN = Path(sys.executable).parent

DB_NAME = "engage_ingest_bench"
SERVER_URL = common.SERVER_URL
DATABASE_URL = f"{SERVER_URL}/{DB_NAME}"
SECRET_KEY = "engage-ingest-bench-only-not-a-secret"

GOAL_V1_RPS = 1_000
GOAL_BATCH_OPS = 20_000
BATCH_SIZE = 100  # operations per v2 batch request (half identify, half event)
SCENARIOS = ["v1-identify-create", "v1-identify-update", "v1-event", "v2-batch"]
# Not a goal, a yardstick: a Track request that authenticates and answers, writing nothing.
BASELINE = "v1-auth-only"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CREATED_AT = 1_700_000_000


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- Django, database ------------------------------------------------------------------


def bench_env(synchronous_commit: str = "") -> dict:
    """The environment of gunicorn and of this process's Django: bench database only.

    ``synchronous_commit`` ("off") is a diagnostic: gunicorn's connections then commit
    without waiting for the WAL flush, which shows how much the fsync at COMMIT costs.
    """
    env = dict(os.environ)
    for name in ("ENGAGE_TRACK_API_RATE", "REDIS_URL", "ENGAGE_VAR_DIR"):
        env.pop(name, None)
    env.update({
        "DATABASE_URL": DATABASE_URL + (
            f"?options=-c%20synchronous_commit%3D{synchronous_commit}"
            if synchronous_commit else ""),
        "SECRET_KEY": SECRET_KEY,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1",
        "CONN_MAX_AGE": "600",
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "engage.settings",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def setup_django() -> None:
    os.environ.update(bench_env())
    os.environ.pop("ENGAGE_TRACK_API_RATE", None)
    import django

    django.setup()


def migrate() -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"],
                   cwd=REPO_ROOT, env=bench_env(), check=True)


def people_tables() -> list[str]:
    from people.models import Activity, Device, Event, Person, Suppression

    return [m._meta.db_table for m in (Person, Event, Device, Activity, Suppression)]


def truncate_people() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(people_tables())} RESTART IDENTITY CASCADE")
        cursor.execute("CHECKPOINT")


def vacuum_analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in people_tables():
            cursor.execute(f"VACUUM (ANALYZE) {table}")


def db_counts(ws: int) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM people_person WHERE workspace_id = %s),"
            " (SELECT count(*) FROM people_event WHERE workspace_id = %s),"
            " (SELECT count(*) FROM people_activity WHERE workspace_id = %s),"
            " (SELECT xact_commit + xact_rollback FROM pg_stat_database"
            "  WHERE datname = current_database())",
            [ws, ws, ws],
        )
        people, events, activity, xacts = cursor.fetchone()
    return {"people": people, "events": events, "activity": activity, "xacts": xacts}


def postgres_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
        cursor.execute("SELECT name, setting FROM pg_settings WHERE name IN "
                       "('shared_buffers', 'synchronous_commit', 'fsync', 'max_connections')")
        settings = dict(cursor.fetchall())
    return f"PostgreSQL {version} ({', '.join(f'{k}={v}' for k, v in sorted(settings.items()))})"


# --- CPU accounting from /proc ---------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # rest[0] is field 3 (state)


def _ticks(rest: list[str], children: bool) -> int:
    ticks = int(rest[11]) + int(rest[12])  # utime, stime
    if children:
        ticks += int(rest[13]) + int(rest[14])  # cutime, cstime: reaped children
    return ticks


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def cpu_snapshot(gunicorn_pid: int | None) -> dict:
    """CPU ticks so far of gunicorn (master + workers), PostgreSQL, and the machine.

    PostgreSQL counts this database's backends and the server's own processes (WAL
    writer, checkpointer, ...), not the backends of other databases: the machine may be
    shared, and what others run is reported apart as ``other``.
    """
    pg_uid = pwd.getpwnam("postgres").pw_uid
    gunicorn = postgres = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        rest = _stat(pid)
        if rest is None:
            continue
        if gunicorn_pid and (pid == gunicorn_pid or int(rest[1]) == gunicorn_pid):
            gunicorn += _ticks(rest, children=pid == gunicorn_pid)
            continue
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
        except OSError:
            continue
        if uid == pg_uid:
            command = _cmdline(pid)
            if f" {DB_NAME} " in command or not ("(" in command or "[local]" in command):
                postgres += _ticks(rest, children=False)
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"gunicorn": gunicorn, "postgres": postgres, "busy": sum(fields[:8]) - idle,
            "self": (own.ru_utime + own.ru_stime) * CLK_TCK, "time": time.monotonic()}


def cpu_split(before: dict, after: dict, wrk_seconds: float) -> dict:
    wall = after["time"] - before["time"]
    cores = {key: (after[key] - before[key]) / CLK_TCK / wall
             for key in ("gunicorn", "postgres", "busy", "self")}
    cores["wrk"] = wrk_seconds / wall
    cores["machine_busy"] = cores.pop("busy")
    cores["other"] = max(0.0, cores["machine_busy"] - cores["gunicorn"] - cores["postgres"]
                         - cores["wrk"] - cores.pop("self"))
    return {key: round(value, 2) for key, value in cores.items()}


def wait_until_quiet(max_wait: float, threshold: float = 0.25, window: float = 3.0) -> float:
    """Wait until the machine's CPU is idle (others' work below ``threshold`` cores).

    Return the busy cores of the last window. Gives up after ``max_wait`` seconds: the
    run then goes on and its ``other`` column says how much it was disturbed.
    """
    deadline = time.monotonic() + max_wait
    told = False
    while True:
        before = cpu_snapshot(None)
        time.sleep(window)
        after = cpu_snapshot(None)
        busy = (after["busy"] - before["busy"]) / CLK_TCK / (after["time"] - before["time"])
        if busy < threshold or time.monotonic() > deadline:
            if told:
                log(f"  machine busy {busy:.2f} cores: going on")
            return busy
        if not told:
            log(f"  machine busy {busy:.2f} cores with work not ours: waiting (at most "
                f"{max_wait:.0f} s)")
            told = True


# --- a yardstick: gunicorn with no Django -------------------------------------------------


def plain_wsgi_app(environ, start_response):
    """What gunicorn alone costs: read the request, answer ``{}`` (no Django, no database)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "2")])
    return [b"{}"]


def run_plain(spec: str, workdir: Path, *, auth: str, args) -> dict:
    """Drive ``plain_wsgi_app`` under the same gunicorn configuration."""
    server = Server(spec, workdir, app="bench.ingest:plain_wsgi_app")
    try:
        server.start()
        result = run_scenario(BASELINE, server, workdir, ws=0, auth=auth, prefix="plain",
                              ids_file=None, args=args)
    finally:
        server.stop()
    result["scenario"] = "plain WSGI app, no Django (yardstick)"
    return result


# --- gunicorn --------------------------------------------------------------------------


class Server:
    """gunicorn on a socket bound here to 127.0.0.1:0, in its own process group."""

    def __init__(self, spec: str, log_dir: Path, synchronous_commit: str = "",
                 app: str = "engage.wsgi:application"):
        self.spec = spec
        self.synchronous_commit = synchronous_commit
        self.app = app
        kind, _, size = spec.partition(":")
        workers, _, threads = size.partition("x")
        self.kind = kind
        self.workers = int(workers)
        self.threads = int(threads or 1)
        if kind not in ("sync", "gthread"):
            raise SystemExit(f"unknown server kind {kind!r}: use sync:N or gthread:NxT")
        self.log_path = log_dir / f"gunicorn-{kind}-{self.workers}x{self.threads}.log"
        if app != "engage.wsgi:application":
            self.log_path = log_dir / f"gunicorn-plain-{kind}-{self.workers}x{self.threads}.log"
        self.process: subprocess.Popen | None = None
        self.port = 0

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(2048)
        self.port = listener.getsockname()[1]
        fd = listener.fileno()
        command = [
            str(VENV_BIN / "gunicorn"), self.app,
            "--bind", f"fd://{fd}",
            "--workers", str(self.workers),
            "--worker-class", self.kind,
            "--threads", str(self.threads),
            "--timeout", "60", "--graceful-timeout", "5", "--keep-alive", "5",
            "--log-level", "warning", "--error-logfile", str(self.log_path),
            "--chdir", str(REPO_ROOT),
        ]
        with open(self.log_path, "ab") as handle:
            self.process = subprocess.Popen(
                command, cwd=REPO_ROOT, env=bench_env(self.synchronous_commit), pass_fds=[fd],
                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            )
        listener.close()  # gunicorn holds its own copy
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/api/v1/accounts/region"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}); see "
                                   f"{self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    response.read()
                    if self.app != "engage.wsgi:application":
                        return
            except urllib.error.HTTPError as error:
                if error.code == 401:  # up, and answering as the Track API does
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout}s; see {self.log_path}")

    def wait_idle(self, timeout: float = 120) -> None:
        """Wait until the workers have drained what wrk left queued (no CPU for 1 s)."""
        deadline = time.monotonic() + timeout
        last = cpu_snapshot(self.pid)["gunicorn"]
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = cpu_snapshot(self.pid)["gunicorn"]
            if now - last > 2:  # ticks: a worker is still busy
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= 1:
                return
            last = now

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def worker_pids(self) -> list[int]:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()
                and (_stat(int(entry)) or ["", "0"])[1] == str(self.pid)]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        pgid = self.process.pid  # start_new_session: its own group, led by the master
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass


# --- wrk -------------------------------------------------------------------------------

LUA_COMMON = r"""
local AUTH = "%(auth)s"
local PREFIX = "%(prefix)s"
local IDS_FILE = "%(ids_file)s"
local NTHREADS = %(nthreads)d
local HEADERS = {["Authorization"] = AUTH, ["Content-Type"] = "application/json"}
local threads = {}
ids = {}
n = 0
counter = 0
bad = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  if IDS_FILE ~= "" then
    for line in io.lines(IDS_FILE) do ids[#ids + 1] = line end
  end
  n = #ids
  counter = math.floor(tid * n / NTHREADS)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("HTTP " .. status .. ": " .. body:sub(1, 300) .. "\n") end
  end
end

function done(summary, latency, requests)
  local non200 = 0
  for _, t in ipairs(threads) do non200 = non200 + (t:get("bad") or 0) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"non200":%%d,"connect":%%d,"read":%%d,' ..
    '"write":%%d,"status":%%d,"timeout":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,' ..
    '"max_us":%%d,"mean_us":%%.1f}\n',
    summary.requests, summary.duration, non200, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""

LUA_REQUEST = {
    # A new person each time: id and email never seen before.
    "v1-identify-create": r"""
function request()
  counter = counter + 1
  local id = PREFIX .. "-" .. tid .. "-" .. counter
  local body = '{"email":"' .. id .. '@example.com","first_name":"Ada","last_name":' ..
    '"Lovelace","plan":"pro","age":36,"created_at":%(created_at)d}'
  return wrk.format("PUT", "/api/v1/customers/" .. id, HEADERS, body)
end
""",
    # An existing person; the values change every time (also on a retried run, whose
    # prefix differs), so every call writes.
    "v1-identify-update": r"""
function request()
  local id = ids[(counter %% n) + 1]
  counter = counter + 1
  local body = '{"plan":"' .. PREFIX .. counter .. '","last_seen":' .. (%(created_at)d + counter) ..
    ',"age":37}'
  return wrk.format("PUT", "/api/v1/customers/" .. id, HEADERS, body)
end
""",
    "v1-event": r"""
function request()
  local id = ids[(counter %% n) + 1]
  counter = counter + 1
  local body = '{"name":"purchased","data":{"price":23.5,"currency":"EUR","sku":"sku-' ..
    counter .. '"},"timestamp":%(created_at)d}'
  return wrk.format("POST", "/api/v1/customers/" .. id .. "/events", HEADERS, body)
end
""",
    # GET /api/v1/accounts/region: authentication (one SELECT) and DRF, nothing else.
    "v1-auth-only": r"""
function request()
  return wrk.format("GET", "/api/v1/accounts/region", {["Authorization"] = AUTH})
end
""",
    # 100 distinct people a request: 50 identified for the first time, 50 existing ones
    # with an event each.
    "v2-batch": r"""
local HALF = %(half)d
batches = 0
function request()
  batches = batches + 1
  local parts = {}
  for k = 1, HALF do
    local nid = PREFIX .. "-" .. tid .. "-" .. batches .. "-" .. k
    parts[#parts + 1] = '{"type":"person","action":"identify","identifiers":{"id":"' ..
      nid .. '"},"attributes":{"email":"' .. nid .. '@example.com","first_name":"Ada",' ..
      '"last_name":"Lovelace","plan":"pro","age":36,"created_at":%(created_at)d}}'
    local eid = ids[(counter %% n) + 1]
    counter = counter + 1
    parts[#parts + 1] = '{"type":"person","action":"event","identifiers":{"id":"' .. eid ..
      '"},"name":"purchased","attributes":{"price":23.5,"currency":"EUR","sku":"sku-' ..
      counter .. '"},"timestamp":%(created_at)d}'
  end
  return wrk.format("POST", "/api/v2/batch", HEADERS,
                    '{"batch":[' .. table.concat(parts, ",") .. ']}')
end
""",
}


def write_lua(path: Path, scenario: str, *, auth: str, prefix: str, ids_file: str,
              threads: int) -> None:
    values = {"auth": auth, "prefix": prefix, "ids_file": ids_file, "nthreads": threads,
              "created_at": CREATED_AT, "half": BATCH_SIZE // 2}
    path.write_text(LUA_COMMON % values + LUA_REQUEST[scenario] % values)


class Wrk:
    """One bounded wrk run; its CPU time comes from wait4's rusage."""

    process: subprocess.Popen | None = None

    @classmethod
    def run(cls, script: Path, port: int, *, duration: int, connections: int,
            threads: int) -> tuple[dict, float, str]:
        command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s",
                   "--timeout", "10s", "-s", str(script), f"http://127.0.0.1:{port}"]
        cls.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, start_new_session=True)
        try:
            out, err = cls.process.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            cls.kill()
            raise
        # communicate() reaped it: its CPU is in this process's children's rusage.
        cls.process = None
        line = next((row for row in out.splitlines() if row.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no result:\n{out}\n{err}")
        return json.loads(line[len("WRKJSON "):]), 0.0, err.strip()

    @classmethod
    def kill(cls) -> None:
        if cls.process is not None and cls.process.poll() is None:
            try:
                os.killpg(cls.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            cls.process.wait()
        cls.process = None


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- scenarios -------------------------------------------------------------------------


def basic_auth(site_id: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{site_id}:{key}".encode()).decode()


def export_ids(ws: int, prefixes: list[str], path: Path) -> int:
    """Write the customer ids created under ``prefixes``, shuffled, one a line."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT customer_id FROM people_person WHERE workspace_id = %s "
                       "AND customer_id ~ %s", [ws, f"^({'|'.join(prefixes)})[0-9]*-"])
        ids = [row[0] for row in cursor.fetchall()]
    random.Random(7).shuffle(ids)
    path.write_text("".join(f"{i}\n" for i in ids))
    return len(ids)


def run_scenario(scenario: str, server: Server, workdir: Path, *, ws: int, auth: str,
                 prefix: str, ids_file: Path | None, args) -> dict:
    """Run a scenario; again (up to --retries times) if other work took CPU meanwhile."""
    best = None
    for attempt in range(args.retries + 1):
        result = _run_scenario(scenario, server, workdir, ws=ws, auth=auth,
                               prefix=f"{prefix}{attempt or ''}", ids_file=ids_file, args=args)
        if best is None or result["cpu_cores"]["other"] < best["cpu_cores"]["other"]:
            best = result
        if result["cpu_cores"]["other"] <= args.disturbed:
            break
        log(f"  disturbed: other work took {result['cpu_cores']['other']} cores")
    best["attempts"] = attempt + 1
    return best


def _run_scenario(scenario: str, server: Server, workdir: Path, *, ws: int, auth: str,
                  prefix: str, ids_file: Path | None, args) -> dict:
    script = workdir / f"{scenario}.lua"
    write_lua(script, scenario, auth=auth, prefix=prefix,
              ids_file=str(ids_file) if ids_file else "", threads=args.wrk_threads)
    quiet = wait_until_quiet(args.max_wait)
    before_rows = db_counts(ws)
    before_cpu = cpu_snapshot(server.pid)
    before_children = children_cpu()
    result, _, err = Wrk.run(script, server.port, duration=args.duration,
                             connections=args.connections, threads=args.wrk_threads)
    wrk_cpu = children_cpu() - before_children
    after_cpu = cpu_snapshot(server.pid)
    server.wait_idle()  # requests wrk left queued finish: their rows count too
    time.sleep(1)  # backends flush their statistics
    after_rows = db_counts(ws)
    seconds = result["duration_us"] / 1e6
    ops_per_request = BATCH_SIZE if scenario == "v2-batch" else 1
    rows = {key: after_rows[key] - before_rows[key] for key in after_rows}
    requests = result["requests"]
    out = {
        "scenario": scenario,
        "server": server.spec + (f" synchronous_commit={server.synchronous_commit}"
                                 if server.synchronous_commit else ""),
        "connections": args.connections,
        "seconds": round(seconds, 2),
        "requests": requests,
        "rps": round(requests / seconds, 1),
        "ops_per_s": round(requests * ops_per_request / seconds, 1),
        "p50_ms": result["p50_us"] / 1000,
        "p90_ms": result["p90_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "max_ms": result["max_us"] / 1000,
        "non200": result["non200"],
        "socket_errors": {k: result[k] for k in ("connect", "read", "write", "timeout")
                          if result[k]},
        "rows": rows,
        "xacts_per_request": round(rows.pop("xacts") / requests, 2) if requests else None,
        "cpu_cores": cpu_split(before_cpu, after_cpu, wrk_cpu),
        "machine_busy_before": round(quiet, 2),
    }
    if requests:
        cores = out["cpu_cores"]
        out["cpu_ms_per_request"] = {
            side: round(cores[side] * seconds * 1000 / requests, 2)
            for side in ("gunicorn", "postgres", "wrk")}
    if err:
        out["wrk_stderr"] = err[:1000]
    log(f"  {scenario:20s} {out['rps']:8.1f} req/s {out['ops_per_s']:9.1f} ops/s "
        f"p50 {out['p50_ms']:.1f} ms p99 {out['p99_ms']:.1f} ms non-200 {out['non200']} "
        f"rows {rows} cpu {out['cpu_cores']}")
    return out


def run_server(spec: str, workdir: Path, *, ws: int, auth: str, args, profile_dir) -> list:
    truncate_people()
    vacuum_analyze()
    server = Server(spec, workdir, args.synchronous_commit)
    results = []
    try:
        server.start()
        log(f"{spec}: gunicorn pid {server.pid} on 127.0.0.1:{server.port}, "
            f"workers {server.worker_pids()}")
        tag = spec.replace(":", "").replace("x", "t")
        # Warm up every worker and its database connection.
        warm = workdir / "warm.lua"
        write_lua(warm, "v1-identify-create", auth=auth, prefix=f"warm{tag}", ids_file="",
                  threads=args.wrk_threads)
        Wrk.run(warm, server.port, duration=3, connections=args.connections,
                threads=args.wrk_threads)
        server.wait_idle()
        prefix = f"c{tag}"
        results.append(run_scenario("v1-identify-create", server, workdir, ws=ws, auth=auth,
                                    prefix=prefix, ids_file=None, args=args))
        ids_file = workdir / f"ids-{tag}.txt"
        count = export_ids(ws, [prefix], ids_file)
        # Updates, events and batches go to existing people, and the requests in flight
        # must name different people (or they would wait on each other's row locks).
        needed = 2 * args.connections * BATCH_SIZE
        rounds = 0
        while count < needed:
            rounds += 1
            if rounds > 10:
                raise RuntimeError(f"only {count} people could be created")
            log(f"  {count} people: creating more (unmeasured) to reach {needed}")
            fill = workdir / "fill.lua"
            write_lua(fill, "v1-identify-create", auth=auth, prefix=f"x{rounds}{tag}",
                      ids_file="", threads=args.wrk_threads)
            Wrk.run(fill, server.port, duration=30, connections=args.connections,
                    threads=args.wrk_threads)
            server.wait_idle()
            count = export_ids(ws, [prefix, *(f"x{r}{tag}" for r in range(1, rounds + 1))],
                               ids_file)
        log(f"  {count} existing people for the next scenarios")
        for scenario in ("v1-identify-update", "v1-event", "v2-batch", BASELINE):
            results.append(run_scenario(scenario, server, workdir, ws=ws, auth=auth,
                                        prefix=f"b{tag}", ids_file=ids_file, args=args))
        if profile_dir is not None:
            profile_server(server, workdir, Path(profile_dir), ws=ws, auth=auth,
                           ids_file=ids_file, tag=tag, args=args)
    finally:
        server.stop()
    return results


# --- profiling -------------------------------------------------------------------------

# Self time (the leaf frame) by layer, first match wins.
PROFILE_LAYERS = [
    ("psycopg (client side: adapting, sending, reading)", "psycopg/"),
    ("Django ORM: SQL compilation", "django/db/models/sql/"),
    ("Django ORM: models, querysets, fields", "django/db/models/"),
    ("Django DB backend", "django/db/"),
    ("DRF", "rest_framework/"),
    ("Django: handlers, middleware, request/response", "django/"),
    ("engage code (people/, engage/)", "/work/main/"),
    ("gunicorn", "gunicorn/"),
    ("json", "json/"),
]


def _layer(frame: str) -> str | None:
    location = frame[frame.rfind("(") + 1:]
    if location.startswith(("people/", "engage/")):
        return "engage code (people/, engage/)"
    for label, needle in PROFILE_LAYERS:
        if location.startswith(needle) or f"/{needle}" in location:
            return label
    return None


def summarise_profile(path: Path, top: int = 15) -> dict:
    """Read py-spy's collapsed stacks of the workers (idle included): where wall time goes.

    ``wall_percent``: idle (waiting for a request), waiting on PostgreSQL (the worker
    blocked in psycopg's wait for a result or a COMMIT), and running Python, split by
    the layer of the leaf frame. ``inclusive_percent``: the engage functions the
    samples pass through (the share of wall time spent in them and what they call).
    """
    wall: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        count = int(count)
        frames = [f.strip() for f in stack.split(";")]
        if not any("gunicorn/workers" in f for f in frames):
            continue  # the master's own loop
        total += count
        leaf = frames[-1]
        if leaf.startswith(("SyncWorker.wait ", "EpollSelector.select", "PollSelector.select",
                            "DefaultSelector.select")) and not any(
                "WSGIHandler" in f for f in frames):
            bucket = "idle: waiting for a request"
        elif leaf.startswith("ClientCursorMixin._execute_send "):
            bucket = "sending a query (socket write; the worker may lose the CPU here)"
        elif "psycopg/waiting" in leaf or leaf.startswith((
                "Connection.wait ", "BaseConnection._exec_command ", "wait_c",
                "wait_epoll", "wait_select", "wait_poll")):
            bucket = "blocked on PostgreSQL (query result or COMMIT)"
        else:
            bucket = "running: " + (_layer(leaf) or "other (C builtins, stdlib)")
        wall[bucket] = wall.get(bucket, 0) + count
        seen = set()
        for frame in frames:
            location = frame[frame.rfind("(") + 1:]
            if location.startswith(("people/", "engage/")):
                name = frame[:frame.rfind(" (")] + " (" + location.split(":")[0] + ")"
                if name not in seen:
                    seen.add(name)
                    inclusive[name] = inclusive.get(name, 0) + count
    if not total:
        return {"samples": 0}
    percent = lambda d: {k: round(100 * v / total, 1)  # noqa: E731
                         for k, v in sorted(d.items(), key=lambda kv: -kv[1])}
    return {"samples": total, "wall_percent": percent(wall),
            "inclusive_percent": dict(list(percent(inclusive).items())[:top])}


def profile_server(server: Server, workdir: Path, out_dir: Path, *, ws, auth, ids_file, tag,
                   args) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = max(5, min(args.duration, 15))
    summaries = {}
    for scenario in [*SCENARIOS, BASELINE]:
        script = workdir / f"profile-{scenario}.lua"
        write_lua(script, scenario, auth=auth, prefix=f"p{tag}{scenario[:5]}",
                  ids_file="" if scenario == "v1-identify-create" else str(ids_file),
                  threads=args.wrk_threads)
        raw = out_dir / f"{scenario}.collapsed.txt"
        server.wait_idle()
        spy = subprocess.Popen(
            [str(VENV_BIN / "py-spy"), "record", "--pid", str(server.pid), "--subprocesses",
             "--idle", "--format", "raw", "--rate", "100", "--duration", str(seconds + 2),
             "--output", str(raw), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        try:
            time.sleep(1)
            Wrk.run(script, server.port, duration=seconds, connections=args.connections,
                    threads=args.wrk_threads)
            _, err = spy.communicate(timeout=60)
        finally:
            if spy.poll() is None:
                spy.kill()
                spy.wait()
        if not raw.exists():
            log(f"py-spy wrote nothing for {scenario}: {err[-500:]}")
            continue
        summaries[scenario] = summarise_profile(raw)
        log(f"  profile {scenario}: {summaries[scenario].get('wall_percent')}")
    (out_dir / "summary.json").write_text(json.dumps(summaries, indent=2))


# --- queries per request ---------------------------------------------------------------


def count_queries(ws_site: str, key: str) -> dict:
    """Run one request of each kind in-process and count its SQL statements."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_AUTHORIZATION=basic_auth(ws_site, key), HTTP_HOST="127.0.0.1")
    body = {"email": "qc-1@example.com", "first_name": "Ada", "last_name": "Lovelace",
            "plan": "pro", "age": 36, "created_at": CREATED_AT}
    batch = []
    for k in range(BATCH_SIZE // 2):
        batch.append({"type": "person", "action": "identify", "identifiers": {"id": f"qcb-{k}"},
                      "attributes": {"email": f"qcb-{k}@example.com", "plan": "pro"}})
        batch.append({"type": "person", "action": "event", "identifiers": {"id": f"qce-{k}"},
                      "name": "purchased", "attributes": {"price": 23.5}})
    calls = [
        ("v1-identify-create", "put", "/api/v1/customers/qc-1", body),
        ("v1-identify-update", "put", "/api/v1/customers/qc-1", {"plan": "p2", "age": 37}),
        ("v1-event", "post", "/api/v1/customers/qc-1/events",
         {"name": "purchased", "data": {"price": 23.5}, "timestamp": CREATED_AT}),
    ]
    # The batch's events are for existing people, as in the load.
    for k in range(BATCH_SIZE // 2):
        client.put(f"/api/v1/customers/qce-{k}", data=json.dumps({"plan": "x"}),
                   content_type="application/json")
    calls.append(("v2-batch", "post", "/api/v2/batch", {"batch": batch}))
    counts = {}
    for name, method, path, payload in calls:
        with CaptureQueriesContext(connection) as captured:
            response = getattr(client, method)(path, data=json.dumps(payload),
                                               content_type="application/json")
        assert response.status_code == 200, (name, response.status_code, response.content)
        statements = [q["sql"] for q in captured.captured_queries]
        counts[name] = {
            "statements": len(statements),
            "kinds": [s.split()[0] + (" FOR UPDATE" if "FOR UPDATE" in s else "")
                      + (" " + s.split()[2] if s.startswith("INSERT") else
                         " " + s.split()[1] if s.startswith("UPDATE") else
                         (" " + s.split(" FROM ")[1].split()[0] if " FROM " in s else ""))
                      for s in statements],
        }
    return counts


# --- raw-SQL floor ---------------------------------------------------------------------


def _copy_text(rows) -> bytes:
    """Render rows in COPY's text format (our values hold no tab, newline or backslash)."""
    lines = []
    for row in rows:
        fields = []
        for value in row:
            if value is None:
                fields.append("\\N")
            else:
                text = str(value)
                assert not any(c in text for c in "\t\n\\"), text
                fields.append(text)
        lines.append("\t".join(fields))
    return ("\n".join(lines) + "\n").encode()


PERSON_COLUMNS = ("workspace_id, cio_id, customer_id, email, email_key, attributes, "
                  "unsubscribed, created_at, updated_at, attributes_timestamp")
ACTIVITY_COLUMNS = "workspace_id, cio_id, kind, data, forgotten, created_at"
EVENT_COLUMNS = ("workspace_id, person_id, anonymous_id, name, type, timestamp, data, "
                 "dedup_id, received_at")


def _people_rows(ws: int, prefix: str, n: int, now: str) -> tuple[list, list]:
    from people.models import generate_cio_id

    created = datetime.fromtimestamp(CREATED_AT, UTC).isoformat()
    people, activity = [], []
    keys = json.dumps(sorted(["email", "first_name", "last_name", "plan", "age",
                              "created_at"]))
    for i in range(n):
        cid = f"{prefix}-{i}"
        email = f"{cid}@example.com"
        cio = generate_cio_id()
        attributes = json.dumps({"email": email, "first_name": "Ada", "last_name": "Lovelace",
                                 "plan": "pro", "age": 36, "created_at": CREATED_AT})
        people.append((ws, cio, cid, email, email, attributes, "f", created, now, None))
        activity.append((ws, cio, "created", f'{{"attributes": {keys}}}', "f", now))
    return people, activity


def _event_rows(ws: int, person_ids: list[int], n: int, now: str) -> list:
    at = datetime.fromtimestamp(CREATED_AT, UTC).isoformat()
    return [(ws, person_ids[i % len(person_ids)], None, "purchased", "event", at,
             json.dumps({"price": 23.5, "currency": "EUR", "sku": f"sku-{i}"}), None, now)
            for i in range(n)]


def _copy(cur, table: str, columns: str, data: bytes) -> None:
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for start in range(0, len(data), 1 << 20):
            copy.write(data[start:start + (1 << 20)])


def _insert_many(cur, table: str, columns: str, rows: list, per_statement: int) -> None:
    width = len(rows[0])
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        values = ",".join(["(" + ",".join(["%s"] * width) + ")"] * len(chunk))
        cur.execute(f"INSERT INTO {table} ({columns}) VALUES {values}",
                    [v for row in chunk for v in row])


def _parallel_copy(conns: list, parts: list[list[tuple[str, str, bytes]]]) -> None:
    """COPY each part on its own connection, all at once (threads; libpq waits without
    the GIL), each part in one transaction."""
    import threading

    errors = []

    def worker(conn, part):
        try:
            with conn.cursor() as cur:
                for table, columns, data in part:
                    _copy(cur, table, columns, data)
            conn.commit()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(conn, part))
               for conn, part in zip(conns, parts, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def raw_sql_floor(n: int, max_wait: float = 900) -> dict:
    """Write the rows each scenario writes straight into PostgreSQL; rows per second."""
    import psycopg

    from engage.services import create_workspace

    truncate_people()
    vacuum_analyze()
    ws = create_workspace(name="floor", identifier_mode="email_or_id")[0].pk
    ws2 = create_workspace(name="floor insert", identifier_mode="email_or_id")[0].pk
    now = datetime.now(UTC).isoformat()
    out = {}
    with psycopg.connect(DATABASE_URL) as conn, conn.cursor() as cur:
        def timed(label, work, units):
            conn.commit()
            wait_until_quiet(max_wait)
            before = cpu_snapshot(None)
            start = time.perf_counter()
            work()
            conn.commit()
            seconds = time.perf_counter() - start
            after = cpu_snapshot(None)
            cores = cpu_split(before, after, 0.0)
            cores.pop("gunicorn")
            cores.pop("wrk")
            cores["client"] = round(cores["machine_busy"] - cores["postgres"] - cores["other"], 2)
            out[label] = {"units": units, "seconds": round(seconds, 3),
                          "per_s": round(units / seconds, 1), "cpu_cores": cores}
            log(f"  floor {label:36s} {units / seconds:10.1f} /s cpu {cores}")

        # identify, creates: a person row and a 'created' activity row each.
        people, activity = _people_rows(ws, "fc", n, now)
        p_text, a_text = _copy_text(people), _copy_text(activity)
        timed("identify-create COPY", lambda: (
            _copy(cur, "people_person", PERSON_COLUMNS, p_text),
            _copy(cur, "people_activity", ACTIVITY_COLUMNS, a_text)), n)
        people2, activity2 = _people_rows(ws2, "fi", n, now)

        def insert_creates():
            for start in range(0, n, BATCH_SIZE):
                _insert_many(cur, "people_person", PERSON_COLUMNS,
                             people2[start:start + BATCH_SIZE], BATCH_SIZE)
                _insert_many(cur, "people_activity", ACTIVITY_COLUMNS,
                             activity2[start:start + BATCH_SIZE], BATCH_SIZE)
                conn.commit()
        timed("identify-create INSERT x100/tx", insert_creates, n)

        cur.execute("SELECT id, cio_id, customer_id FROM people_person WHERE workspace_id = %s",
                    [ws])
        existing = cur.fetchall()
        random.Random(7).shuffle(existing)

        # identify, updates: two attributes changed, updated_at, and an activity row.
        updates = [(row[2], json.dumps({"plan": f"p{i}", "last_seen": CREATED_AT + i}))
                   for i, row in enumerate(existing[:n])]
        changed_text = _copy_text(
            (ws, row[1], "attributes_changed",
             json.dumps({"changed": {"plan": f"p{i}", "last_seen": CREATED_AT + i}}), "f", now)
            for i, row in enumerate(existing[:n]))

        def update_people():
            for start in range(0, len(updates), 1000):
                chunk = updates[start:start + 1000]
                values = ",".join(["(%s, %s::jsonb)"] * len(chunk))
                cur.execute(
                    "UPDATE people_person p SET attributes = p.attributes || v.patch, "
                    f"updated_at = now() FROM (VALUES {values}) v(customer_id, patch) "
                    "WHERE p.workspace_id = %s AND p.customer_id = v.customer_id",
                    [x for pair in chunk for x in pair] + [ws])
            _copy(cur, "people_activity", ACTIVITY_COLUMNS, changed_text)
        timed("identify-update UPDATE x1000 + COPY", update_people, len(updates))

        # events for existing people.
        person_ids = [row[0] for row in existing]
        events = _event_rows(ws, person_ids, n, now)
        e_text = _copy_text(events)
        timed("event COPY", lambda: _copy(cur, "people_event", EVENT_COLUMNS, e_text), n)
        timed("event INSERT x100/tx", lambda: [
            (_insert_many(cur, "people_event", EVENT_COLUMNS, events[s:s + BATCH_SIZE],
                          BATCH_SIZE), conn.commit()) for s in range(0, n, BATCH_SIZE)], n)

        # batch: per 100 operations, 50 new people (+ activity) and 50 events.
        half = n // 2
        b_people, b_activity = _people_rows(ws, "fb", half, now)
        b_events = _event_rows(ws, person_ids, half, now)
        bp, ba, be = _copy_text(b_people), _copy_text(b_activity), _copy_text(b_events)
        timed("batch COPY (ops)", lambda: (
            _copy(cur, "people_person", PERSON_COLUMNS, bp),
            _copy(cur, "people_activity", ACTIVITY_COLUMNS, ba),
            _copy(cur, "people_event", EVENT_COLUMNS, be)), 2 * half)
        b2_people, b2_activity = _people_rows(ws2, "fbi", half, now)
        b2_events = _event_rows(ws, person_ids, half, now)
        h = BATCH_SIZE // 2

        def insert_batches():
            for s in range(0, half, h):
                _insert_many(cur, "people_person", PERSON_COLUMNS, b2_people[s:s + h], h)
                _insert_many(cur, "people_activity", ACTIVITY_COLUMNS, b2_activity[s:s + h], h)
                _insert_many(cur, "people_event", EVENT_COLUMNS, b2_events[s:s + h], h)
                conn.commit()
        timed("batch INSERT 3x50/tx (ops)", insert_batches, 2 * half)

        # The batch rows again, as two COPY streams on two connections (two cores).
        parts = []
        for k in range(2):
            q = half // 2
            pp, pa = _people_rows(ws, f"fp{k}", q, now)
            pe = _event_rows(ws, person_ids[k::2], q, now)
            parts.append([("people_person", PERSON_COLUMNS, _copy_text(pp)),
                          ("people_activity", ACTIVITY_COLUMNS, _copy_text(pa)),
                          ("people_event", EVENT_COLUMNS, _copy_text(pe))])
        # Opened before the clock starts, closed after it stops: their backends' CPU counts.
        conns = [psycopg.connect(DATABASE_URL) for _ in parts]
        try:
            timed("batch COPY, 2 connections (ops)", lambda: _parallel_copy(conns, parts),
                  2 * 2 * (half // 2))
        finally:
            for extra in conns:
                extra.close()
    return out


# --- report ----------------------------------------------------------------------------

FLOOR_OF = {
    "v1-identify-create": "identify-create COPY",
    "v1-identify-update": "identify-update UPDATE x1000 + COPY",
    "v1-event": "event COPY",
    "v2-batch": "batch COPY (ops)",
}


def markdown(results: list, floor: dict, queries: dict, args) -> str:
    lines = [
        f"Load: wrk, {args.connections} connections, {args.wrk_threads} threads, "
        f"{args.duration} s a run.",
        "",
        "| gunicorn | scenario | req/s | ops/s | p50 ms | p99 ms | max ms | non-200 | "
        "CPU cores: gunicorn / PostgreSQL / wrk / others / machine | "
        "CPU ms a request: gunicorn / PostgreSQL |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        c = r["cpu_cores"]
        lines.append(
            f"| {r['server']} | {r['scenario']} | {r['rps']:,.0f} | {r['ops_per_s']:,.0f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['non200']} | "
            f"{c['gunicorn']} / {c['postgres']} / {c['wrk']} / {c['other']} / "
            f"{c['machine_busy']} | {r['cpu_ms_per_request']['gunicorn']} / "
            f"{r['cpu_ms_per_request']['postgres']} |")
    if results:
        best = {}
        for r in results:
            if r["ops_per_s"] > best.get(r["scenario"], {}).get("ops_per_s", -1):
                best[r["scenario"]] = r
        lines += ["", "| scenario | best engage /s | goal | met | floor (COPY) /s | "
                      "engage / floor |", "| --- | ---: | ---: | --- | ---: | ---: |"]
        for scenario in SCENARIOS:
            if scenario not in best:
                continue
            r = best[scenario]
            goal = GOAL_BATCH_OPS if scenario == "v2-batch" else GOAL_V1_RPS
            f = floor.get(FLOOR_OF[scenario], {}).get("per_s")
            ratio = f"{r['ops_per_s'] / f:.3f}" if f else "-"
            lines.append(f"| {scenario} ({r['server']}) | {r['ops_per_s']:,.0f} | {goal:,} | "
                         f"{'yes' if r['ops_per_s'] >= goal else 'no'} | "
                         f"{f:,.0f} | {ratio} |" if f else
                         f"| {scenario} ({r['server']}) | {r['ops_per_s']:,.0f} | {goal:,} | "
                         f"{'yes' if r['ops_per_s'] >= goal else 'no'} | - | - |")
    if floor:
        lines += ["", "| raw-SQL floor (one connection unless said) | rows or ops | s | per s | "
                      "CPU cores: PostgreSQL / client / others |",
                  "| --- | ---: | ---: | ---: | --- |"]
        for label, f in floor.items():
            c = f.get("cpu_cores", {})
            lines.append(f"| {label} | {f['units']:,} | {f['seconds']} | {f['per_s']:,.0f} | "
                         f"{c.get('postgres')} / {c.get('client')} / {c.get('other')} |")
    if queries:
        lines += ["", "| request | SQL statements | which |", "| --- | ---: | --- |"]
        for name, q in queries.items():
            kinds = q["kinds"]
            summary = ", ".join(kinds) if len(kinds) <= 12 else (
                ", ".join(kinds[:8]) + f", ... ({len(kinds) - 8} more)")
            lines.append(f"| {name} | {q['statements']} | {summary} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=25, help="seconds a run (default 25)")
    parser.add_argument("--connections", type=int, default=32,
                        help="wrk connections (default 32)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument("--servers", default="sync:2,sync:4,gthread:4x4",
                        help="comma-separated gunicorn configurations: sync:N or gthread:NxT "
                             "(default sync:2,sync:4,gthread:4x4)")
    parser.add_argument("--floor-rows", type=int, default=100_000,
                        help="rows per raw-SQL floor measurement (0 skips it)")
    parser.add_argument("--profile", metavar="DIR",
                        help="also profile the first configuration with py-spy into DIR")
    parser.add_argument("--max-wait", type=float, default=900,
                        help="before each run, wait at most this many seconds for the "
                             "machine to be idle (default 900)")
    parser.add_argument("--retries", type=int, default=2,
                        help="run a scenario again, up to this many times, when other work "
                             "took more than --disturbed cores meanwhile (default 2)")
    parser.add_argument("--disturbed", type=float, default=0.15,
                        help="CPU cores of other work that make a run disturbed (0.15)")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="",
                        help="diagnostic: set synchronous_commit on gunicorn's connections")
    parser.add_argument("--no-yardstick", action="store_true",
                        help="skip the plain-WSGI run (gunicorn with no Django) that follows "
                             "the first configuration")
    parser.add_argument("--json", metavar="PATH", help="write all results as JSON to PATH")
    args = parser.parse_args()
    if args.connections < args.wrk_threads:
        parser.error("--connections must be at least --wrk-threads")
    if subprocess.run(["which", "wrk"], capture_output=True).returncode:
        parser.error("wrk is not installed: apt-get install -y wrk")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    started = datetime.now(UTC)
    log(f"recreating {DB_NAME} and migrating")
    common.recreate_database(DB_NAME)
    migrate()
    setup_django()
    from engage.services import create_workspace

    workspace, credentials = create_workspace(name="ingest bench", identifier_mode="email_or_id")
    auth = basic_auth(credentials.site_id, credentials.track_api_key)
    info = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/ingest.py", *sys.argv[1:]]),
        "cores": os.cpu_count(),
        "cpu": next((line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), platform.processor()),
        "postgres": postgres_version(),
        "python": platform.python_version(),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True).stdout.strip(),
        "uncommitted": [line[3:] for line in subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
            capture_output=True, text=True).stdout.splitlines()],
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0],
        "gunicorn": subprocess.run([str(VENV_BIN / "gunicorn"), "--version"],
                                   capture_output=True, text=True).stdout.strip(),
    }
    import timeit

    wait_until_quiet(args.max_wait)
    best = min(timeit.repeat("sum(range(10000))", number=500, repeat=5)) / 500
    info["python_speed"] = f"sum(range(10000)) in {best * 1e6:.0f} us"
    log(f"{info['cores']} cores, {info['postgres']}, {info['python_speed']}")
    results, floor, queries = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="engage-ingest-") as tmp:
        workdir = Path(tmp)
        try:
            queries = count_queries(credentials.site_id, credentials.track_api_key)
            log(f"SQL statements per request: "
                f"{ {k: v['statements'] for k, v in queries.items()} }")
            for index, spec in enumerate(s.strip() for s in args.servers.split(",") if s.strip()):
                results += run_server(spec, workdir, ws=workspace.pk, auth=auth, args=args,
                                      profile_dir=args.profile if index == 0 else None)
                if index == 0 and not args.no_yardstick:
                    results.append(run_plain(spec, workdir, auth=auth, args=args))
            if args.floor_rows:
                log(f"raw-SQL floor, {args.floor_rows:,} rows")
                floor = raw_sql_floor(args.floor_rows, args.max_wait)
        finally:
            Wrk.kill()
            for path in workdir.glob("gunicorn-*.log"):
                text = path.read_text(errors="replace").strip()
                if text:
                    log(f"{path.name}:\n{text[-2000:]}")
    report = markdown(results, floor, queries, args)
    print(f"\nIngestion benchmark, {info['date']}\ncommand: {info['command']}\n"
          f"code: {info['git']}, uncommitted changes in {', '.join(info['uncommitted']) or '-'}\n"
          f"machine: {info['cores']} cores ({info['cpu']}), {info['postgres']}, "
          f"Python {info['python']} ({info['python_speed']}), {info['gunicorn']}, "
          f"{info['wrk']}\n")
    print(report)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"info": info, "results": results, "floor": floor, "queries": queries}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
