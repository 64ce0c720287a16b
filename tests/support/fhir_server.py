"""A real FHIR server process for tests: fhirsnake (PyPI), serving resources written to files.

fhirsnake serves `resources/<Type>/<id>.json` from its working directory: reads
(`GET /Patient/1`) and type-level lists (`GET /Observation?...`, which returns every resource of
the type: it does not filter on search parameters, so the mapping's own subject check matters).
It is run behind a bearer-token check, as a protected EHR server is, so a test can tell that the
CDS service sent the call's fhirAuthorization token. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support.processes import PYTHON, Proc, free_port, http_ok

# Run in the child: fhirsnake's own app, with the token check in front of it.
_SERVE = """
import os, sys
import fhirsnake
root = os.path.dirname(fhirsnake.__file__)
sys.path.insert(0, root)  # fhirsnake's main.py imports its sibling `files` at top level
os.chdir(sys.argv[1])  # it reads ./resources
import uvicorn
from starlette.responses import JSONResponse
from main import app
token = sys.argv[3]

@app.middleware("http")
async def bearer(request, call_next):
    if request.url.path != "/" and request.headers.get("authorization") != "Bearer " + token:
        return JSONResponse({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "login"}]}, status_code=401)
    return await call_next(request)

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="info")
"""


def write_resources(folder: Path, resources: Iterable[Mapping[str, Any]]) -> None:
    for res in resources:
        kind, ident = str(res["resourceType"]), str(res["id"])
        target = folder / "resources" / kind
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{ident}.json").write_text(json.dumps(res))


def serve_fhir(resources: Iterable[Mapping[str, Any]], log_dir: Path, token: str) -> Proc:
    """Start fhirsnake on a free port with these resources; the caller stops it."""
    folder = log_dir / "fhirsnake"
    write_resources(folder, resources)
    port = free_port()
    proc = Proc("fhirsnake", [PYTHON, "-c", _SERVE, str(folder), str(port), token],
                os.environ, log_dir, port=port)
    return proc.wait_ready(lambda: http_ok(f"{proc.base}/"), timeout=60)
