"""The fault-injection suite, quick version: `python -m bench.faults --quick` as CI runs it,
on each broker (Redis, and RabbitMQ with `--broker rabbitmq`: restarted with stop_app/start_app,
its work queue purged, instead of Redis crashed and wiped).

Every scenario (worker children and the whole worker killed, Redis crashed and wiped,
PostgreSQL stopped, duplicate submissions, webhook receivers failing, hanging and answering
410) against real processes on this machine, with its own Redis and PostgreSQL; the script's
exit code and table must both say lost = 0 and duplicated = 0, and the webhook row that every
delivery to the recovering receiver arrived, every signature verified and nothing reached the
410 endpoint after it was disabled.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.support import ROOT, rabbitmq
from tests.support.servers import PG_BIN

SCENARIOS = 7
LIMIT_SECONDS = 480


def _missing_tools() -> list[str]:
    missing = [t for t in ("redis-server",) if shutil.which(t) is None]
    missing += [str(PG_BIN / t) for t in ("initdb", "pg_ctl") if not (PG_BIN / t).exists()]
    return missing


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_quick_fault_run_loses_nothing_and_duplicates_nothing(broker: str) -> None:
    missing = _missing_tools()
    if broker == "rabbitmq" and rabbitmq.reachable():
        missing.append(str(rabbitmq.reachable()))
    if missing:
        message = f"the fault suite starts its own servers and needs {', '.join(missing)}"
        if os.environ.get("MECC_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    run = subprocess.Popen([sys.executable, "-m", "bench.faults", "--quick",
                            "--broker", broker], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = run.communicate(timeout=LIMIT_SECONDS)
    except subprocess.TimeoutExpired:
        run.terminate()  # the script stops the servers it started on SIGTERM
        stdout, stderr = run.communicate(timeout=60)
        pytest.fail(f"python -m bench.faults --quick took over {LIMIT_SECONDS} s:\n"
                    f"{stderr[-4000:]}")
    report = f"exit {run.returncode}\n{stdout}\n{stderr[-4000:]}"
    assert run.returncode == 0, report

    rows = [line for line in stdout.splitlines() if re.match(r"\| \([a-f]\) ", line)]
    assert len(rows) == SCENARIOS, report
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        _, attempted, accepted, evaluated, lost, duplicated, server_errors, _ = cells
        assert int(attempted) > 0, line
        assert int(accepted) == int(evaluated) == int(attempted), line
        assert (int(lost), int(duplicated), int(server_errors)) == (0, 0, 0), line
    assert "faults: PASS" in stdout, report

    webhooks = next(line for line in rows if line.startswith("| (f) "))
    notes = webhooks.strip("|").split("|")[-1]
    delivered = re.search(r"(\d+) events to a receiver answering 500 .*?: (\d+)/(\d+) "
                          r"delivered \((\d+) after failed requests\) after (\d+) x 500 and "
                          r"(\d+) hung", notes)
    assert delivered, webhooks
    sent, ok, total, recovered, failures, hung = map(int, delivered.groups())
    assert sent == ok == total > 0 and recovered > 0 and failures > 0 and hung > 0, webhooks
    gone = re.search(r"(\d+) delivered before the 410, (\d+) disabled, endpoint disabled, "
                     r"(\d+) attempts after the disable", notes)
    assert gone, webhooks
    assert int(gone.group(2)) > 0 and int(gone.group(3)) == 0, webhooks
    signatures = re.search(r"(\d+)/(\d+) signatures verified with standardwebhooks \(a wrong "
                           r"secret is rejected\)", notes)
    assert signatures and signatures.group(1) == signatures.group(2) != "0", webhooks
    # Retried only on failure: an id answered 200 is not sent again (no worker dies here).
    assert re.search(r"(?<!\d)0 webhook-ids redelivered after a 200", notes), webhooks
    assert "one delivery row per (event, endpoint)" in notes, webhooks
