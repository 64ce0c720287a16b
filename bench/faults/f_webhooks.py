"""(f) Webhook receivers misbehaving: events with callback URLs, then every delivery counted."""

from __future__ import annotations

import time

from bench.faults.check import Row, check, settle
from bench.faults.f_check import check_webhooks
from bench.faults.f_receiver import GONE_EVERY, HOOK_WORKER_ENV, Receiver
from bench.faults.load import Load, event_body
from bench.faults.plan import Plan
from bench.faults.stack import Stack
from tests.support.stack import create_key


def settle_deliveries(stack: Stack, source: str, bound: float) -> float:
    """Wait until every delivery of these events has ended (succeeded, failed or disabled)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(stack.database_url)
    began = time.monotonic()
    try:
        while time.monotonic() - began < bound:
            with engine.connect() as conn:
                open_ = conn.execute(text(
                    "SELECT count(*) FROM webhook_deliveries d JOIN events e ON e.id = "
                    "d.event_id WHERE e.source = :s AND d.status IN ('pending', 'delivering')"),
                    {"s": source}).scalar_one()
                without = conn.execute(text(
                    "SELECT count(*) FROM events e WHERE e.source = :s AND e.status = "
                    "'evaluated' AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d "
                    "WHERE d.event_id = e.id)"), {"s": source}).scalar_one()
            if open_ == 0 and without == 0:
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    return time.monotonic() - began


def run_webhooks(stack: Stack, plan: Plan, run: str) -> Row:
    """(f) Events with callback URLs to receivers that fail, hang and answer 410.

    Counted per event, as for the other scenarios, and then per webhook delivery:
      lost        an accepted event with no delivery row; a delivery to the recovering
                  receiver that did not end `succeeded` within the settle bound, or that the
                  database calls succeeded while the receiver never answered it 200
      duplicated  more than one delivery row for one (event, endpoint)
      violations  a signature that does not verify; a body for the wrong event or with other
                  prompts than were shown; the 410 endpoint not disabled, a delivery to it
                  neither succeeded (before the 410) nor disabled, or a request reaching it
                  that was claimed after it had been disabled (or a second one for a delivery
                  it already answered); a phase of the receiver that no request reached
    A webhook-id answered 200 and then sent again is noted (Standard Webhooks is at-least-once;
    we retry only on failure, so it should not happen), and so is a request already in flight
    when the 410 disabled its endpoint.
    """
    began = time.monotonic()
    row = Row("f")
    source = "faults-f"
    receiver = Receiver(plan.hook_fail_seconds, plan.hook_hang_seconds)
    try:
        # Loopback is refused unless the allow-list names the address itself (127.0.0.1).
        hook_key = create_key(
            stack.env, callback_hosts=[f"127.0.0.1:{receiver.port(name)}"
                                       for name in ("recovering", "gone")])
        key, receiver.secret = hook_key.key, hook_key.webhook_secret
        stack.restart_worker(**HOOK_WORKER_ENV)
        stack.restart_beat(**HOOK_WORKER_ENV)
        bodies = []
        for i in range(plan.hook_events):
            body = event_body("f", run, i)
            body["callback_url"] = receiver.url("gone" if i % GONE_EVERY == 0 else "recovering")
            bodies.append(body)
        receiver.start()
        load = Load(stack, bodies, plan.hook_load_seconds, 60, key=key).start()
        load.join()
        accepted_ids = {i for s in load.sent.values() for i in s.ids}
        waited = settle(stack, source, accepted_ids, plan.settle_seconds)
        waited += settle_deliveries(stack, source, max(10.0, plan.settle_seconds - waited))
        # A request hung at the end of the second phase finishes within HANG_SECONDS.
        died = stack.check_alive()
        if died:
            row.notes.append("died on their own: " + ", ".join(died))
            row.server_errors += len(died)
        check(stack, "f", load, row)
        check_webhooks(stack, receiver, load, row, plan)
        row.notes.append(f"settled {waited:.0f} s after the load")
    finally:
        receiver.stop()
        stack.restart_worker()  # back to the fault run's settings for any later scenario
        stack.restart_beat()
    row.seconds = time.monotonic() - began
    return row
