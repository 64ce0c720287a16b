"""What the benchmarks share besides the process harness (tests.support): the machine, the
results file, a fresh benchmark database and environment, and realistic event bodies.

Everything talks to 127.0.0.1 only. The benchmarks use their own PostgreSQL database
(`mecc_bench` by default, dropped and re-created at the start of a run: never anyone else's)
and Redis database 14 (FLUSHDB on that database only).
"""

from __future__ import annotations

import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support import ROOT
from tests.support.stack import BENCH_REDIS_URL, flush_redis, new_database, service_env

RESULTS = ROOT / "bench" / "RESULTS.md"
# MECC_BENCH_DB (a name starting mecc_bench) lets two benchmarks run side by side.
PG_BENCH_DB = os.environ.get("MECC_BENCH_DB") or "mecc_bench"


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
SECTIONS = ("push", "rules", "ingest", "ingest-rabbitmq", "pipeline", "pipeline-rabbitmq",
            "reports", "fuzz")


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
        text = (text.rstrip() + "\n\n## Fault injection\n\n"
                "(Filled in from `python -m bench.faults`.)\n")
    RESULTS.write_text(text)


def command_line() -> str:
    """How this benchmark was run, for its section of the results."""
    args = " ".join(sys.argv[1:])
    return f".venv/bin/python -m bench.{Path(sys.argv[0]).stem}" + (f" {args}" if args else "")


# ---------------------------------------------------------------------------------------------
# Database, Redis, keys


def fresh_database(kind: str, var_dir: Path, name: str = PG_BENCH_DB) -> str:
    """A new, empty benchmark database (PostgreSQL `name`, or SQLite under var_dir); `mecc
    seed` migrates it."""
    return new_database(kind, var_dir, name=name, migrate=False).url


def bench_env(database_url: str, var_dir: Path, redis_url: str = BENCH_REDIS_URL,
              **extra: str) -> dict[str, str]:
    # The per-key limit (default 6,000 a minute) would answer 429 to a benchmark's single
    # key; raised so it never trips, while its check (Redis round trips) still runs.
    return service_env(database_url, redis_url, var_dir,
                       MECC_RATE_LIMIT="100000000 per minute", **extra)


def flush_bench_redis(url: str = BENCH_REDIS_URL) -> None:
    flush_redis(url)  # this benchmark database only


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
# Processes (started with tests.support.processes)


def gunicorn_description() -> str:
    """The worker class the API's gunicorn configuration gives (environment included)."""
    from mecc.platform import gunicorn_conf

    kind = gunicorn_conf.worker_class
    if kind == "gthread":
        return f"gthread, {gunicorn_conf.threads} threads"
    if kind == "gevent":
        return f"gevent, {gunicorn_conf.worker_connections} connections"
    return kind


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
    """A valid contact event like tests.support.factories.make_event, with varied content."""
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


def rabbitmq_broker(env: dict[str, str], broker: str) -> str:
    """With `--broker rabbitmq`: a virtual host of our own on the machine's RabbitMQ as the
    broker of `env` and of this process (bench/noop_tasks.py reads it); its URL ("" for
    Redis). The caller drops it with tests.support.rabbitmq.delete_vhost."""
    if broker != "rabbitmq":
        return ""
    from tests.support import rabbitmq

    url = rabbitmq.create_vhost("mecc-bench")
    env["MECC_BROKER_URL"] = os.environ["MECC_BROKER_URL"] = url
    return url


def broker_label(broker: str) -> str:
    return ("RabbitMQ 3.10 on this machine (quorum queues, publisher confirms; a virtual host "
            "of its own)" if broker == "rabbitmq" else "Redis database 14")
