"""CDS Hooks: synchronous card response latency, p50 / p99, through the real stack.

gunicorn (mecc.platform.gunicorn_conf) on a PostgreSQL database of its own, the default rule
pack, a CDS client registered with `mecc cds-clients add` (an ES384 key made here), and one fresh
signed JWT per call, as an EHR sends them. Each call stores the event, evaluates it in the
request with the live rules and suppression, and answers cards. The baseline, measured in the
same run with the same client: GET /cds-services (discovery) on the same server, i.e. the
cost of the web stack alone.

    .venv/bin/python -m bench.cds [--calls 400] [--concurrency 4] [--prefetch-kb 100-150]
        [--output bench/out/cds.md]

By default each call prefetches a Patient and two Observations (a few hundred bytes). With
`--prefetch-kb LOW-HIGH` each call's prefetch is a record from tests/fixtures/fhir/ (the UK GP
records: Conditions, Observations, medicines) grown with earlier-dated copies of the fixtures'
Observations and Conditions until its JSON is LOW-HIGH KB, as an EHR's searches over a long
record return; sizes spread evenly over the range.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import ROOT
from tests.support.processes import MECC, free_port, start_api
from tests.support.stack import BENCH_REDIS_URL, new_database, seed, service_env

FIXTURES = ROOT.parent / "shared" / "fixtures" / "cds-hooks"
ISS = "https://ehr.bench.example/"
SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
SERVICE = "/cds-services/mecc-patient-view"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


RECORDS = ROOT / "tests" / "fixtures" / "fhir"
_KEYS = {"Condition": "conditions", "Observation": "observations",
         "MedicationStatement": "medications", "MedicationRequest": "medications"}


def _fixture_resources() -> tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]:
    """The UK records' own resources (one list per record, Patient first), and a pool of every
    fixture's Observations and Conditions to grow them with."""
    records, pool = [], []
    for path in sorted(RECORDS.glob("*.json")):
        resources = [e["resource"] for e in json.loads(path.read_text())["entry"]]
        if path.name.startswith("uk_"):
            records.append([r for r in resources if r["resourceType"] == "Patient"]
                           + [r for r in resources if r["resourceType"] in _KEYS])
        pool += [r for r in resources if r["resourceType"] in ("Observation", "Condition")]
    return records, pool


def _dated_back(resource: dict[str, Any], days: int) -> dict[str, Any]:
    copy = json.loads(json.dumps(resource))
    for key in ("effectiveDateTime", "onsetDateTime", "recordedDate"):
        if isinstance(copy.get(key), str) and len(copy[key]) >= 10:
            day = datetime.fromisoformat(copy[key][:10]) - timedelta(days=days)
            copy[key] = day.date().isoformat()
    return copy


def record_prefetch(i: int, low_kb: int, high_kb: int,
                    fixtures: tuple[list[list[dict[str, Any]]], list[dict[str, Any]]]
                    ) -> dict[str, Any]:
    """Prefetch for call i: a fixture record as patient `bench-i`, grown to its target size."""
    records, pool = fixtures
    target = (low_kb + (high_kb - low_kb) * (i * 7919 % 101) / 100) * 1024
    patient, *own = (json.loads(json.dumps(r)) for r in records[i % len(records)])
    patient["id"] = f"bench-{i}"
    bundles: dict[str, dict[str, Any]] = {}

    def add(resource: dict[str, Any], n: int) -> int:
        resource["id"] = f"bench-{i}-{n}"
        resource["subject"] = {"reference": f"Patient/{patient['id']}"}
        resource.pop("encounter", None)
        key = _KEYS[resource["resourceType"]]
        bundles.setdefault(key, {"resourceType": "Bundle", "type": "searchset", "entry": []})
        entry = {"fullUrl": f"https://ehr.bench.example/fhir/{resource['resourceType']}/"
                            f"{resource['id']}", "resource": resource}
        bundles[key]["entry"].append(entry)
        return len(json.dumps(entry, separators=(",", ":")))

    size = len(json.dumps(patient, separators=(",", ":")))
    for n, resource in enumerate(own):
        size += add(resource, n)
    n = len(own)
    while size < target:
        source = pool[(i + n) % len(pool)]
        size += add(_dated_back(source, 30 * (1 + n // len(pool)) + n % 29), n)
        n += 1
    return {"patientToGreet": patient, **bundles}


def hook_body(i: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / "request-patient-view.json").read_text())
    body["hookInstance"] = str(uuid.uuid4())
    patient = body["prefetch"]["patientToGreet"]
    patient["id"] = f"bench-{i}"
    body["context"]["patientId"] = patient["id"]
    when = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()

    def obs(ident: str, code: tuple[str, str], **value: Any) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": ident, "status": "final",
                "code": {"coding": [{"system": code[0], "code": code[1]}]},
                "subject": {"reference": f"Patient/{patient['id']}"},
                "effectiveDateTime": when, **value}

    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
    body["prefetch"]["observations"] = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": obs("s", (SNOMED, "77176002"))},
        {"resource": obs("b", (LOINC, "39156-5"), valueQuantity={
            "value": 31.0, "unit": "kg/m2", "system": "http://unitsofmeasure.org",
            "code": "kg/m2"})}]}
    return body


class Ehr:
    def __init__(self, port: int) -> None:
        self.private = ec.generate_private_key(ec.SECP384R1())
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key()))
        public.update({"kid": "bench-1", "alg": "ES384", "use": "sig"})
        self.jwks = {"keys": [public]}
        self.aud = f"http://127.0.0.1:{port}{SERVICE}"

    def token(self) -> str:
        now = int(time.time())
        return jwt.encode({"iss": ISS, "aud": self.aud, "iat": now, "exp": now + 300,
                           "jti": str(uuid.uuid4())}, self.private, algorithm="ES384",
                          headers={"kid": "bench-1", "typ": "JWT"})


def run_load(port: int, calls: int, concurrency: int, make_request: Any) -> list[float]:
    """`calls` requests over `concurrency` keep-alive connections; latencies in ms."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(calls))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            method, path, body, headers = make_request(i)
            start = time.perf_counter()
            conn.request(method, path, body=body, headers=headers)
            answer = conn.getresponse()
            payload = answer.read()
            elapsed = (time.perf_counter() - start) * 1000
            if answer.status != 200:
                with lock:
                    errors.append(f"{method} {path}: {answer.status} {payload[:300]!r}")
                break
            with lock:
                latencies.append(elapsed)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors:
        raise RuntimeError(f"{len(errors)} failed calls, e.g. {errors[0]}")
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--output", default="")
    parser.add_argument("--prefetch-kb", default="",
                        help="LOW-HIGH: each call prefetches a fixture record of this size")
    args = parser.parse_args()
    sizes = [int(kb) for kb in args.prefetch_kb.split("-")] if args.prefetch_kb else []
    fixtures = _fixture_resources() if sizes else ([], [])
    body_kb: list[float] = []

    work = Path(tempfile.mkdtemp(prefix="mecc-bench-cds-"))
    database = new_database("postgresql", work, prefix="mecc_bench_cds", migrate=False)
    port = free_port()
    # The token's audience is checked against the public URL (required since issue 10's work).
    env = service_env(database.url, BENCH_REDIS_URL, work, MECC_PORT=str(port),
                      MECC_RATE_LIMIT="off", MECC_PUBLIC_URL=f"http://127.0.0.1:{port}")
    api = None
    try:
        seed(env)
        ehr = Ehr(port)
        jwks_file = work / "jwks.json"
        jwks_file.write_text(json.dumps(ehr.jwks))
        subprocess.run([MECC, "cds-clients", "add", "--iss", ISS, "--jwks",
                        str(jwks_file), "--organisation", "Y02345"], env=env, check=True,
                       capture_output=True, timeout=60)
        (work / "logs").mkdir(exist_ok=True)
        api = start_api(env, work / "logs", port=port, workers=2)

        def discovery(_: int) -> tuple[str, str, None, dict[str, str]]:
            return "GET", "/cds-services", None, {}

        def hook(i: int) -> tuple[str, str, str, dict[str, str]]:
            body = hook_body(i)
            if sizes:
                body["prefetch"] = record_prefetch(i, sizes[0], sizes[-1], fixtures)
                body["context"]["patientId"] = body["prefetch"]["patientToGreet"]["id"]
            text = json.dumps(body)
            body_kb.append(len(text) / 1024)
            return "POST", SERVICE, text, {
                "Authorization": f"Bearer {ehr.token()}", "Content-Type": "application/json"}

        run_load(port, 20, 2, hook)  # warm up: caches, connections
        base = run_load(port, args.calls, args.concurrency, discovery)
        cards = run_load(port, args.calls, args.concurrency, hook)
    finally:
        if api is not None:
            api.stop()
        database.drop()

    rows = [("discovery (baseline)", base), ("patient-view → cards", cards)]
    shown = (f"; request bodies {min(body_kb):.0f}-{max(body_kb):.0f} KB, median "
             f"{statistics.median(body_kb):.0f} KB" if sizes else "")
    lines = [f"CDS Hooks, {args.calls} calls, concurrency {args.concurrency}{shown}",
             "", "| request | p50 ms | p99 ms | mean ms | ratio p50 to baseline |",
             "|---|---|---|---|---|"]
    for label, values in rows:
        lines.append(f"| {label} | {percentile(values, .5):.1f} | {percentile(values, .99):.1f}"
                     f" | {statistics.fmean(values):.1f} | "
                     f"{percentile(values, .5) / percentile(base, .5):.1f}× |")
    text = "\n".join(lines)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
