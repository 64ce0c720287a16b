"""`mecc run`: API (gunicorn), Celery worker and beat as children, stopped together.

A laptop needs no configuration: SQLite under var/ and the local Redis. If no Redis answers at
MECC_REDIS_URL and `redis-server` is installed, one is started under var/ for this run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from mecc.platform.celery_app import DEFAULT_QUEUE
from mecc.platform.settings import Settings

STOP_GRACE_SECONDS = 15


def _redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        client.ping()
        client.close()
        return True
    except redis.RedisError:
        return False


def _start_local_redis(url: str, var: Path) -> subprocess.Popen[bytes] | None:
    binary = shutil.which("redis-server")
    parts = urlsplit(url)
    if binary is None or parts.hostname not in ("127.0.0.1", "localhost"):
        return None
    port = str(parts.port or 6379)
    redis_dir = var / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    print(f"mecc: no Redis at {url}; starting redis-server on port {port} under {redis_dir}",
          flush=True)
    proc = subprocess.Popen([binary, "--port", port, "--bind", "127.0.0.1", "--dir",
                             str(redis_dir), "--save", "", "--appendonly", "no"])
    for _ in range(50):
        if _redis_answers(url):
            return proc
        time.sleep(0.1)
    proc.terminate()
    return None


def _commands(settings: Settings, web_workers: int, concurrency: int, var: Path
              ) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "api": [py, "-m", "gunicorn", "--config", "python:mecc.platform.gunicorn_conf",
                "--workers", str(web_workers), "--bind", f"{settings.host}:{settings.port}",
                "mecc.api:create_app()"],
        # Evaluation (and webhooks) never wait behind a back-test: back-tests have a worker of
        # their own, one at a time.
        "worker": [py, "-m", "celery", "-A", "mecc.worker", "worker", "--loglevel", "INFO",
                   "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
                   "--queues", DEFAULT_QUEUE, "--hostname", f"mecc-{settings.port}@%h"],
        "backtest-worker": [py, "-m", "celery", "-A", "mecc.worker", "worker", "--loglevel",
                            "INFO", "--concurrency", "1", "--without-gossip",
                            "--without-mingle", "--queues", settings.backtest_queue,
                            "--hostname", f"mecc-backtests-{settings.port}@%h"],
        "beat": [py, "-m", "celery", "-A", "mecc.worker", "beat", "--loglevel", "INFO",
                 "--schedule", str(var / f"celerybeat-schedule-{settings.port}")],
    }


def run_all(settings: Settings, *, web_workers: int = 2, concurrency: int = 2) -> int:
    var = Path(settings.var_dir)
    var.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # Several gunicorn and Celery processes share one metrics view on this machine.
    metrics_dir = var / f"prometheus-{settings.port}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

    children: dict[str, subprocess.Popen[bytes]] = {}
    local_redis = None
    if not _redis_answers(settings.redis_url):
        local_redis = _start_local_redis(settings.redis_url, var)
        if local_redis is None:
            print(f"mecc: warning: no Redis at {settings.redis_url}; events are accepted and "
                  "wait in the database until a broker answers", flush=True)

    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    for name, command in _commands(settings, web_workers, concurrency, var).items():
        children[name] = subprocess.Popen(command, env=env)
    print(f"\nmecc: API on http://{settings.host}:{settings.port}  (docs: /api/docs, staff screen: "
          f"/screen)\nmecc: create a key:  .venv/bin/mecc keys create --name me "
          "--organisation '*' --scope events:write --scope prompts:read\n"
          "mecc: Ctrl-C stops everything\n", flush=True)
    exit_code = 0
    while not stopping:
        for name, child in children.items():
            code = child.poll()
            if code is not None:
                print(f"mecc: {name} exited with {code}; stopping the rest", flush=True)
                exit_code = code or 1
                stopping = True
                break
        time.sleep(0.3)

    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children.values():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    if local_redis is not None:
        local_redis.terminate()
        local_redis.wait(timeout=5)
    print("mecc: stopped", flush=True)
    return exit_code
