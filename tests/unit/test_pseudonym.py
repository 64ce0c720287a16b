"""NHS numbers: the modulus-11 check and the keyed hash that is all we keep of them."""

from __future__ import annotations

import re

import pytest

from mecc.intake.pseudonym import (
    body_fingerprint,
    is_valid_nhs_number,
    normalise_nhs_number,
    person_key,
)

# Published test numbers and ones whose check digit is worked by hand below.
VALID = ["9434765919", "4010232137", "9434765870", "9990000018"]


def check_digit(stem: str) -> int:
    total = sum(int(d) * (10 - i) for i, d in enumerate(stem))
    return (11 - total % 11) % 11


def test_worked_example() -> None:
    # 9*10 + 4*9 + 3*8 + 4*7 + 7*6 + 6*5 + 5*4 + 9*3 + 1*2 = 299; 299 % 11 = 2; 11 - 2 = 9.
    assert check_digit("943476591") == 9
    assert is_valid_nhs_number("9434765919")


@pytest.mark.parametrize("number", VALID)
def test_valid_numbers(number: str) -> None:
    assert is_valid_nhs_number(number)


@pytest.mark.parametrize("number", VALID)
def test_every_other_check_digit_is_refused(number: str) -> None:
    for digit in "0123456789":
        if digit != number[-1]:
            assert not is_valid_nhs_number(number[:-1] + digit), number[:-1] + digit


def test_a_check_digit_of_ten_means_no_valid_number() -> None:
    stem = next(s for s in (str(n) for n in range(100_000_000, 100_001_000))
                if check_digit(s) == 10)
    assert all(not is_valid_nhs_number(stem + d) for d in "0123456789")


def test_a_remainder_of_zero_gives_check_digit_zero() -> None:
    stem = next(s for s in (str(n) for n in range(100_000_000, 100_001_000))
                if sum(int(d) * (10 - i) for i, d in enumerate(s)) % 11 == 0)
    assert is_valid_nhs_number(stem + "0")
    assert not is_valid_nhs_number(stem + "1")


@pytest.mark.parametrize("raw", ["", "943476591", "94347659190", "943476591X", "943 476 5919",
                                 "９４３４７６５９１９", "943476591²", "-943476591",
                                 "94347659.9"])
def test_anything_but_ten_ascii_digits_is_refused(raw: str) -> None:
    assert not is_valid_nhs_number(raw)


@pytest.mark.parametrize(("raw", "digits"), [("943 476 5919", "9434765919"),
                                             ("943-476-5919", "9434765919"),
                                             ("9434765919", "9434765919")])
def test_normalise(raw: str, digits: str) -> None:
    assert normalise_nhs_number(raw) == digits


def test_person_key_is_stable_keyed_and_opaque() -> None:
    key = person_key("9434765919", "secret-1")
    assert key == person_key("9434765919", "secret-1")
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert "9434765919" not in key
    assert key != person_key("9434765919", "secret-2")
    assert key != person_key("4010232137", "secret-1")
    # Keyed: not the plain hash anyone could compute from a list of NHS numbers.
    import hashlib

    assert key not in {hashlib.sha256(b"9434765919").hexdigest(),
                       hashlib.sha256(b"nhs:9434765919").hexdigest()}


def test_body_fingerprint_is_canonical_and_keyed() -> None:
    one = {"a": 1, "b": {"c": [1, 2]}, "nhs": "9434765919"}
    reordered = {"nhs": "9434765919", "b": {"c": [1, 2]}, "a": 1}
    assert body_fingerprint(one, "k") == body_fingerprint(reordered, "k")
    assert body_fingerprint(one, "k") != body_fingerprint({**one, "a": 2}, "k")
    assert body_fingerprint(one, "k") != body_fingerprint(one, "other")
    assert "9434765919" not in body_fingerprint(one, "k")
