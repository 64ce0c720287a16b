"""People who sign in to the pages: an account row, and signing in through the sign-in page
in a headless browser (Playwright) — for the page tests of any capability."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mecc.platform.db import Database

PASSWORD = "correct horse battery staple"


def add_person(db: Database, email: str = "ann.lead@example.org", *,
               role: str = "rule_author", organisation: str = "*",
               password: str | None = PASSWORD, name: str = "Ann Lead") -> str:
    """An account, committed (`db` is the app's: app.extensions["mecc"].db); its email."""
    from mecc.people import accounts

    with db.session() as session:
        accounts.create_user(session, email=email, name=name, role=role,
                             organisation=organisation, password=password)
        session.commit()
    return email


def sign_in_on_page(page: Any, base: str, email: str, *, next_path: str = "/admin/rules",
                    password: str = PASSWORD) -> None:
    """Sign in with the password form, as a person would, and wait to arrive at `next_path`."""
    page.goto(f"{base}/sign-in?next={next_path}")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    # The first sign-in of a run pays for an Argon2 verification and a cold browser on a
    # machine that may be busy: allow more than the page's default, and when it still does
    # not arrive say what the page shows (a refused sign-in, a limit) rather than only "timeout".
    try:
        page.wait_for_url(f"{base}{next_path}", timeout=45_000)
    except Exception as exc:  # noqa: BLE001 - re-raised with what the page said
        raise AssertionError(f"sign-in did not reach {next_path}; the page at {page.url} "
                             f"says: {page.inner_text('body')[:500]!r}") from exc
