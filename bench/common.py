"""Shared bits of the benchmarks: the machine, a fresh database, processes, event bodies, results.

Everything talks to 127.0.0.1 only. The benchmarks use their own PostgreSQL database
(`mecc_bench` by default, dropped and re-created at the start of a run: never anyone else's)
and Redis database 14 (FLUSHDB on that database only).
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MECC = str(Path(PYTHON).with_name("mecc"))
RESULTS = ROOT / "bench" / "RESULTS.md"
BENCH_REDIS_URL = "redis://127.0.0.1:6379/14"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
PG_BENCH_DB = "mecc_bench"


# ---------------------------------------------------------------------------------------------
# The machine and the results file


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    free = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.strip()
    return {
        "date": subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip(),
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "free": free,
        "python": platform.python_version(),
        "cpu": cpu,
    }


def machine_markdown(info: Mapping[str, str]) -> str:
    mem = next((ln.split()[1] for ln in info["free"].splitlines() if ln.startswith("Mem:")), "?")
    return (f"- Date: {info['date']}\n"
            f"- Machine: `nproc` = {info['nproc']}, `free -g` total memory {mem} GB, "
            f"CPU {info['cpu']}, Python {info['python']}\n")


_HEADER = """# Benchmark results

Written by the scripts in `bench/` (see `bench/README.md`). Each section is replaced by the next
run of its script; figures are from one run on the machine named in the section. Absolute
numbers drift between runs, so each figure is compared with a baseline measured in the same run.

"""
SECTIONS = ("rules", "ingest", "pipeline")


def write_section(name: str, markdown: str) -> None:
    """Replace this benchmark's section of bench/RESULTS.md (other sections are kept)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else _HEADER
    if not text.startswith("# "):
        text = _HEADER + text
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        # Keep the benchmarks in a fixed order, before the fault-injection section.
        fault = text.find("## Fault injection")
        after = SECTIONS[SECTIONS.index(name) + 1:]
        later = [i for i in (text.find(f"<!-- bench:{s}:start -->") for s in after) if i >= 0]
        at = min(later) if later else (fault if fault >= 0 else len(text))
        text = text[:at] + block + "\n\n" + text[at:]
    if "## Fault injection" not in text:
        text = text.rstrip() + "\n\n## Fault injection\n\n(Filled in from `bench/faults.py`.)\n"
    RESULTS.write_text(text)


def command_line() -> str:
    args = " ".join(sys.argv[1:])
    return f".venv/bin/python bench/{Path(sys.argv[0]).name}" + (f" {args}" if args else "")


# ---------------------------------------------------------------------------------------------
# Database, Redis, keys


def fresh_database(kind: str, var_dir: Path, name: str = PG_BENCH_DB) -> str:
    """A new, empty benchmark database (PostgreSQL `name`, or SQLite under var_dir)."""
    if kind == "sqlite":
        return f"sqlite:///{var_dir / 'bench.db'}"
    if not name.startswith("mecc_bench"):
        raise ValueError("the benchmarks only ever drop databases named mecc_bench*")
    import psycopg

    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def bench_env(database_url: str, var_dir: Path, redis_url: str = BENCH_REDIS_URL,
              **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "MECC_DATABASE_URL": database_url,
        "MECC_REDIS_URL": redis_url,
        "MECC_VAR_DIR": str(var_dir),
        "MECC_SECRET_KEY": "bench-secret-key",
        "MECC_PSEUDONYM_KEY": "bench-pseudonym-key",
        "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
        # The per-key limit (default 6,000 a minute) would answer 429 to a benchmark's single
        # key; raised so it never trips, while its check (Redis round trips) still runs.
        "MECC_RATE_LIMIT": "100000000 per minute",
    })
    prom = var_dir / "prometheus"
    shutil.rmtree(prom, ignore_errors=True)
    prom.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    env.update(extra)
    return env


def seed(env: Mapping[str, str]) -> None:
    """Migrate and load the default rule pack and services, as `make run` does."""
    subprocess.run([MECC, "seed"], env=dict(env), check=True, capture_output=True, timeout=120)


def create_key(env: Mapping[str, str]) -> str:
    out = subprocess.run(
        [MECC, "keys", "create", "--json", "--name", f"bench-{uuid.uuid4().hex[:6]}",
         "--organisation", "*", "--scope", "events:write", "--scope", "prompts:read"],
        env=dict(env), check=True, capture_output=True, text=True, timeout=60)
    return str(json.loads(out.stdout)["key"])


def flush_bench_redis(url: str = BENCH_REDIS_URL) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.flushdb()  # this benchmark database only
    finally:
        client.close()


class Analyzer:
    """ANALYZE the benchmark database every few seconds while a benchmark runs.

    This machine's PostgreSQL runs with autovacuum off, so its planner would keep the statistics
    of an empty database while tables grow by tens of thousands of rows, and pick plans (a scan
    of every event of a source to find 100 of them) that get slower with every batch. Production
    PostgreSQL auto-analyzes; this stands in for it. A thread with its own connection; stopped
    by `stop()` or after `max_seconds`.
    """

    def __init__(self, database_url: str, interval: float = 5.0, max_seconds: float = 1800.0):
        self.url = database_url.replace("postgresql+psycopg://", "postgresql://")
        self.interval = interval
        self.max_seconds = max_seconds
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Analyzer:
        if self.url.startswith("postgresql://"):
            self._thread.start()
        return self

    def _loop(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.max_seconds
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.interval) and time.monotonic() < deadline:
                conn.execute("ANALYZE")
                self.runs += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    def __enter__(self) -> Analyzer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def temp_var_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"mecc-bench-{prefix}-"))


# ---------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """A child process in its own process group, logging to a file; stopped by its own pid."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(list(argv), env=dict(env), cwd=ROOT, stdout=self._log,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=5)
        self._log.close()

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def gunicorn(name: str, app_spec: str, port: int, env: Mapping[str, str], log_dir: Path,
             workers: int = 2) -> Proc:
    """gunicorn with the API's own configuration (mecc.platform.gunicorn_conf), as `mecc run` starts it."""
    return Proc(name, [PYTHON, "-m", "gunicorn", "--config", "python:mecc.platform.gunicorn_conf",
                       "--workers", str(workers), "--bind", f"127.0.0.1:{port}", app_spec],
                env, log_dir)


def gunicorn_description() -> str:
    """The worker class the API's gunicorn configuration gives (environment included)."""
    from mecc.platform import gunicorn_conf

    kind = gunicorn_conf.worker_class
    if kind == "gthread":
        return f"gthread, {gunicorn_conf.threads} threads"
    if kind == "gevent":
        return f"gevent, {gunicorn_conf.worker_connections} connections"
    return kind


def celery_worker(name: str, app_module: str, env: Mapping[str, str], log_dir: Path,
                  concurrency: int = 2) -> Proc:
    return Proc(name, [PYTHON, "-m", "celery", "-A", app_module, "worker", "--loglevel",
                       "WARNING", "--concurrency", str(concurrency), "--without-gossip",
                       "--without-mingle", "--hostname", f"{name}-{os.getpid()}@%h"],
                env, log_dir)


def wait_http(port: int, path: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer on port {port}; see {proc.log_path}")


# ---------------------------------------------------------------------------------------------
# Contact events: realistic bodies, each with a handful of facts and some conditions

_FACT_MAKERS: dict[str, Any] = {
    "smoking_status": lambda r: r.choice(["current", "ex", "never", "never", "unknown"]),
    "audit_c": lambda r: r.randint(0, 12),
    "audit": lambda r: r.randint(0, 30),
    "bmi": lambda r: round(r.uniform(18, 42), 1),
    "activity_minutes_per_week": lambda r: r.choice([0, 30, 60, 90, 120, 150, 200, 300]),
    "gppaq": lambda r: r.choice(["active", "moderately_active", "moderately_inactive",
                                 "inactive"]),
    "phq2": lambda r: r.randint(0, 6),
    "gad2": lambda r: r.randint(0, 6),
    "hba1c_mmol_mol": lambda r: round(r.uniform(35, 60), 1),
    "systolic_bp": lambda r: r.randint(100, 175),
    "diastolic_bp": lambda r: r.randint(60, 105),
    "efi_category": lambda r: r.choice(["fit", "mild", "moderate", "severe"]),
    "ucla3": lambda r: r.randint(3, 9),
    "is_carer": lambda r: r.random() < 0.3,
    "financial_concern": lambda r: r.random() < 0.3,
    "lives_alone": lambda r: r.random() < 0.3,
}
# How often a contact records each fact: blood pressure and BMI often, the rest less so.
_FACT_WEIGHTS = {
    "bmi": 6, "smoking_status": 6, "systolic_bp": 5, "diastolic_bp": 5, "audit_c": 3,
    "activity_minutes_per_week": 2, "gppaq": 2, "phq2": 2, "gad2": 2, "hba1c_mmol_mol": 2,
    "audit": 1, "efi_category": 1, "ucla3": 1, "is_carer": 1, "financial_concern": 1,
    "lives_alone": 1,
}
CONDITION_GROUPS = (
    "diabetes_type2", "hypertension", "copd", "asthma", "heart_failure", "coronary_heart_disease",
    "depression", "anxiety", "ckd", "osteoarthritis", "atrial_fibrillation",
)
_ETHNICITY = ("white", "white", "white", "south_asian", "black_african", "black_caribbean",
              "chinese", "mixed", "other")


def nhs_number(rng: random.Random) -> str:
    while True:
        digits = [rng.randint(0, 9) for _ in range(9)]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return "".join(map(str, digits)) + str(check)


def pick_facts(rng: random.Random) -> dict[str, Any]:
    names = list(_FACT_WEIGHTS)
    weights = [_FACT_WEIGHTS[n] for n in names]
    chosen: set[str] = set()
    want = rng.randint(4, 6)
    while len(chosen) < want:
        chosen.add(rng.choices(names, weights)[0])
    return {name: _FACT_MAKERS[name](rng) for name in sorted(chosen)}


def pick_conditions(rng: random.Random, today: date) -> list[dict[str, Any]]:
    count = rng.choices([0, 1, 2, 3], [45, 30, 17, 8])[0]
    out = []
    for group in rng.sample(CONDITION_GROUPS, count):
        item: dict[str, Any] = {"group": group}
        if rng.random() < 0.7:
            item["onset_date"] = (today - timedelta(days=rng.randint(10, 3000))).isoformat()
        out.append(item)
    return out


class People:
    """A pool of people, so that some contacts find earlier prompts for the same person."""

    def __init__(self, rng: random.Random, size: int, prefix: str = "p") -> None:
        self.rng = rng
        self.prefix = prefix
        self.people = [self._person(i) for i in range(size)]

    def _person(self, i: int) -> dict[str, Any]:
        r = self.rng
        born = date(1935, 1, 1) + timedelta(days=r.randint(0, 365 * 70))
        person: dict[str, Any] = {
            "id": f"{self.prefix}-{i:06d}", "birth_date": born.isoformat(),
            "sex": r.choice(["female", "male"]), "ethnicity_group": r.choice(_ETHNICITY),
            "postcode_district": r.choice(["M14", "M13", "M20", "M8", "SK4", "OL1"]),
        }
        if r.random() < 0.8:
            person["nhs_number"] = nhs_number(r)
        return person

    def pick(self) -> dict[str, Any]:
        return self.rng.choice(self.people)


def event_body(rng: random.Random, people: People, event_id: str,
               occurred_at: datetime | None = None) -> dict[str, Any]:
    """A valid contact event like tests/conftest.py's make_event, with varied content."""
    when = occurred_at or datetime.now(UTC) - timedelta(minutes=1)
    return {
        "event_id": event_id,
        "source": "emis-web",
        "occurred_at": when.isoformat(),
        "organisation": "Y02345",
        "setting": rng.choice(["general_practice", "general_practice", "community_pharmacy",
                               "hospital_outpatient"]),
        "contact_type": rng.choice(["appointment", "review", "telephone"]),
        "staff": {"id": f"st-{rng.randint(1, 40)}", "role": rng.choice(
            ["practice_nurse", "gp", "pharmacist", "healthcare_assistant"]), "team": "blue"},
        "person": people.pick(),
        "facts": pick_facts(rng),
        "conditions": pick_conditions(rng, when.date()),
        "preferences": {"opted_out": False,
                        "declined_topics": ["alcohol"] if rng.random() < 0.1 else []},
    }


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
