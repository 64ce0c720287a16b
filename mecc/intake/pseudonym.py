"""NHS numbers: the modulus-11 check, and the keyed hash that is all we ever keep of them."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any


def normalise_nhs_number(raw: str) -> str:
    """Digits only: integrators send '943 476 5919' and '943-476-5919' as often as not."""
    return raw.replace(" ", "").replace("-", "")


def is_valid_nhs_number(number: str) -> bool:
    """The NHS Digital modulus-11 check on a 10-digit number."""
    # isascii: str.isdigit() is also true of '９' and '²' (the latter then breaks int()).
    if len(number) != 10 or not (number.isascii() and number.isdigit()):
        return False
    total = sum(int(d) * w for d, w in zip(number[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10:
        return False
    return check == int(number[9])


def person_key(nhs_number: str, key: str) -> str:
    """HMAC-SHA256 of the NHS number: the same number from any source reaches one history."""
    return hmac.new(key.encode(), b"nhs:" + nhs_number.encode(), hashlib.sha256).hexdigest()


def body_fingerprint(body: Any, key: str) -> str:
    """Keyed hash of a request body, for idempotency (keyed: the body may hold an NHS number)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key.encode(), b"body:" + canonical.encode(), hashlib.sha256).hexdigest()
