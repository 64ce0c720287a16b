"""RabbitMQ for tests and the fault suite: a virtual host of one's own on the machine's broker
(127.0.0.1:5672, guest/guest), so that queues declared by one run (with their arguments) never
meet another's, and dropping the virtual host drops everything the run left behind."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

HOST = os.environ.get("MECC_TEST_RABBITMQ_HOST", "127.0.0.1")
PORT = int(os.environ.get("MECC_TEST_RABBITMQ_PORT", "5672"))


def ctl(*args: str, timeout: float = 60) -> str:
    """`rabbitmqctl ARGS`; its stdout (CalledProcessError when it fails)."""
    return subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, text=True,
                          timeout=timeout).stdout


def reachable() -> str | None:
    """None when a broker answers and rabbitmqctl is installed; otherwise why not."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not installed"
    try:
        socket.create_connection((HOST, PORT), timeout=2).close()
    except OSError as exc:
        return f"RabbitMQ at {HOST}:{PORT}: {exc}"
    return None


def create_vhost(prefix: str = "mecc-test") -> str:
    """An amqp:// URL on a fresh virtual host (delete_vhost(url) drops it)."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    ctl("add_vhost", name)
    ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    return f"amqp://guest:guest@{HOST}:{PORT}/{name}"


def delete_vhost(url: str) -> None:
    subprocess.run(["rabbitmqctl", "delete_vhost", vhost_of(url)], capture_output=True,
                   timeout=60)


def vhost_of(url: str) -> str:
    return url.rsplit("/", 1)[-1]


@contextmanager
def virtual_host(prefix: str = "mecc-test") -> Iterator[str]:
    """An amqp:// URL on a fresh virtual host, deleted afterwards."""
    url = create_vhost(prefix)
    try:
        yield url
    finally:
        delete_vhost(url)


def backlog(url: str) -> int:
    """Messages in the virtual host's work queues, ready or delivered and not acknowledged."""
    out = ctl("list_queues", "-p", vhost_of(url), "--quiet", "--no-table-headers", "name",
              "messages")
    return sum(int(n) for name, n in (line.split("\t")[:2] for line in out.splitlines()
                                       if "\t" in line) if not name.startswith("mecc.dead"))


def queue_types(vhost_url: str) -> dict[str, str]:
    """Queue name -> type (classic, quorum) on the URL's virtual host."""
    out = ctl("list_queues", "-p", vhost_of(vhost_url), "--quiet", "--no-table-headers",
              "name", "type")
    return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)


def restart_app(down_seconds: float) -> None:
    """Stop the RabbitMQ application (connections drop, quorum queues stay on disk), wait,
    start it again; returns once it accepts connections."""
    ctl("stop_app", timeout=120)
    try:
        time.sleep(down_seconds)
    finally:
        ctl("start_app", timeout=120)
    ctl("await_startup", timeout=120)


def purge(url: str, queue: str = "celery") -> None:
    """Drop every ready message of a work queue (the RabbitMQ counterpart of FLUSHDB)."""
    ctl("purge_queue", "-p", vhost_of(url), queue)
