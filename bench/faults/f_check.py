"""(f) Checking the deliveries against what the receivers saw."""

from __future__ import annotations

import json
from collections import Counter

from bench.faults.check import Row
from bench.faults.f_receiver import GONE_AFTER, HANG_SECONDS, HOOK_TIMEOUT, Received, Receiver
from bench.faults.load import Load
from bench.faults.plan import Plan
from bench.faults.stack import Stack


def check_webhooks(stack: Stack, receiver: Receiver, load: Load, row: Row, plan: Plan) -> None:
    from sqlalchemy import select

    from mecc.platform.db import Database
    from mecc.store.models import Event, Prompt, PushMessage, WebhookDelivery, WebhookEndpoint

    urls = {receiver.url(name): name for name in ("recovering", "gone")}
    db = Database(stack.database_url)
    try:
        with db.session() as session:
            endpoints = {e.id: e for e in session.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.url.in_(list(urls))))}
            events = {e.id: e for e in session.scalars(
                select(Event).where(Event.source == "faults-f"))}
            deliveries = list(session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_id.in_(list(events)))))
            shown: dict[str, set[str]] = {}
            for event_id, prompt_id in session.execute(
                    select(Prompt.event_id, Prompt.id)
                    .join(PushMessage, PushMessage.prompt_id == Prompt.id)
                    .where(Prompt.event_id.in_(list(events)), PushMessage.kind == "prompt")):
                shown.setdefault(event_id, set()).add(prompt_id)
            session.expunge_all()
    finally:
        db.dispose()

    def endpoint_of(delivery: WebhookDelivery) -> str:
        endpoint = endpoints.get(delivery.endpoint_id)
        return urls[endpoint.url] if endpoint is not None else "?"

    # Rows: exactly one per (event, endpoint) for every accepted, evaluated event.
    per_pair = Counter((d.event_id, d.endpoint_id) for d in deliveries)
    extra_rows = sum(n - 1 for n in per_pair.values() if n > 1)
    with_row = {d.event_id for d in deliveries}
    accepted = {i for s in load.sent.values() for i in s.ids}
    evaluated = {i for i in accepted if i in events and events[i].status == "evaluated"}
    no_row = len(evaluated - with_row)
    foreign = sum(1 for d in deliveries if endpoint_of(d) == "?")

    by_id = {d.id: d for d in deliveries}
    requests = receiver.requests("recovering") + receiver.requests("gone")
    per_id: dict[str, list[Received]] = {}
    for r in sorted(requests, key=lambda r: r.at):
        per_id.setdefault(r.webhook_id, []).append(r)
    ok_ids = {i for i, rs in per_id.items() if any(r.answer == 200 for r in rs)}
    # Deliveries answered 200 after at least one failed request (a retry that succeeded).
    recovered = sum(1 for rs in per_id.values() if rs[0].endpoint == "recovering"
                    and rs[0].answer != 200 and any(r.answer == 200 for r in rs))

    # Signatures and bodies.
    bad_signatures = sum(1 for r in requests if not r.verified)
    # The check can fail: the same request does not verify with another key's secret (nor
    # with its body changed), or the count above would prove nothing.
    wrong_secret_rejected = True
    if requests:
        probe = next((r for r in requests if r.verified), requests[0])
        wrong_secret_rejected = not (
            receiver.verify(probe.body, probe.headers, "whsec_" + "QUFB" * 8)
            or receiver.verify(probe.body + b" ", probe.headers))
    unknown = wrong_body = 0
    for r in requests:
        delivery = by_id.get(r.webhook_id)
        if delivery is None or endpoint_of(delivery) != r.endpoint:
            unknown += 1
            continue
        try:
            payload = json.loads(r.body)
            data = payload["data"]
            same = (payload["type"] == "prompts.created"
                    and data["event"]["id"] == delivery.event_id
                    and data["event"]["event_id"] == events[delivery.event_id].event_id
                    and {p["id"] for p in data["prompts"]} == shown.get(delivery.event_id, set()))
        except (ValueError, KeyError, TypeError):
            same = False
        wrong_body += not same

    # The recovering receiver: every delivery succeeded, and the receiver agrees.
    recovering = [d for d in deliveries if endpoint_of(d) == "recovering"]
    statuses = Counter(d.status for d in recovering)
    not_delivered = sum(1 for d in recovering if d.status != "succeeded")
    false_success = sum(1 for d in recovering if d.status == "succeeded" and d.id not in ok_ids)
    answers = Counter(r.answer for r in receiver.requests("recovering"))
    tries = sorted(len(per_id.get(d.id, [])) for d in recovering)
    delays = sorted(
        next(r.at for r in per_id[d.id] if r.answer == 200) - d.created_at.timestamp()
        for d in recovering if d.id in ok_ids)
    resent_after_ok = sum(
        1 for rs in per_id.values()
        if any(r.answer == 200 for r in rs)
        and rs.index(next(r for r in rs if r.answer == 200)) < len(rs) - 1)
    ok_twice = sum(1 for rs in per_id.values() if sum(r.answer == 200 for r in rs) > 1)

    # The 410 receiver: disabled, and nothing claimed after that reaches it.
    gone = [d for d in deliveries if endpoint_of(d) == "gone"]
    gone_endpoint = next((e for e in endpoints.values() if urls[e.url] == "gone"), None)
    disabled_at = (gone_endpoint.disabled_at.timestamp()
                   if gone_endpoint is not None and gone_endpoint.disabled_at else None)
    gone_statuses = Counter(d.status for d in gone)
    gone_unsettled = sum(1 for d in gone if d.status not in ("succeeded", "disabled")
                         or (d.status == "succeeded" and d.id not in ok_ids))
    after_disable = in_flight = 0
    if disabled_at is not None:
        for r in receiver.requests("gone"):
            delivery = by_id.get(r.webhook_id)
            if r.at < disabled_at or delivery is None:
                continue
            claimed = delivery.last_attempt_at.timestamp() if delivery.last_attempt_at else 0
            if claimed >= disabled_at:
                after_disable += 1
            else:
                in_flight += 1
    gone_resent = sum(1 for d in gone if len(per_id.get(d.id, [])) > 1)
    gone_answers = Counter(r.answer for r in receiver.requests("gone"))

    # Phases that no request reached: the scenario did not test what it says.
    unexercised = [name for name, n in (("500", answers[500]), ("hang", answers["hang"]),
                                        ("200 after failing", recovered),
                                        ("410", gone_answers[410])) if not n]

    row.lost += no_row + not_delivered + false_success
    row.duplicated += extra_rows
    row.violations += (bad_signatures + unknown + wrong_body + foreign + gone_unsettled
                       + after_disable + gone_resent + (disabled_at is None) + len(unexercised)
                       + (not wrong_secret_rejected))

    n_ok = len(recovering) - not_delivered
    notes = [
        f"{len(recovering)} events to a receiver answering 500 for {plan.hook_fail_seconds:.0f} s, "
        f"then hanging {HANG_SECONDS:.0f} s (past the {HOOK_TIMEOUT:.0f} s timeout) on 1 "
        f"request in 2 for {plan.hook_hang_seconds:.0f} s, then 200: {n_ok}/{len(recovering)} "
        f"delivered ({recovered} after failed requests) after {answers[500]} x 500 and "
        f"{answers['hang']} hung requests, "
        + (f"{tries[len(tries) // 2]} requests per delivery p50, {tries[-1]} at most, "
           if tries else "")
        + (f"created->delivered p50 {delays[len(delays) // 2]:.1f} s, worst {delays[-1]:.1f} s"
           if delays else "nothing delivered"),
        f"{len(gone)} events to a receiver taking {GONE_AFTER} then answering 410: "
        f"{gone_statuses['succeeded']} delivered before the 410, {gone_statuses['disabled']} "
        f"disabled, endpoint {'disabled' if disabled_at else 'NOT disabled'}, "
        f"{after_disable} attempts after the disable"
        + (f" ({in_flight} already in flight)" if in_flight else ""),
        f"{len(requests) - bad_signatures}/{len(requests)} signatures verified with "
        f"standardwebhooks" + (" (a wrong secret is rejected)" if wrong_secret_rejected
                               else " (a WRONG SECRET ALSO VERIFIES)"),
        f"{resent_after_ok} webhook-ids redelivered after a 200"
        + (f" ({ok_twice} answered 200 twice)" if ok_twice else ""),
        "one delivery row per (event, endpoint)" if not (extra_rows or no_row) else
        f"delivery rows: {no_row} events without one, {extra_rows} extra",
    ]
    findings = [(label, n) for label, n in (
        ("not delivered", not_delivered), ("succeeded but never answered 200", false_success),
        ("bodies for an unknown delivery", unknown), ("bodies not matching the event", wrong_body),
        ("rows for an unexpected endpoint", foreign),
        ("410 deliveries neither delivered nor disabled", gone_unsettled),
        ("410 deliveries sent twice", gone_resent)) if n]
    if findings:
        notes.append("; ".join(f"{label}: {n}" for label, n in findings))
    other = {k: v for k, v in statuses.items() if k != "succeeded"}
    if other:
        notes.append("recovering deliveries not succeeded: "
                     + ", ".join(f"{k} {v}" for k, v in other.items()))
    if unexercised:
        notes.append("phases no request reached: " + ", ".join(unexercised))
    row.notes[:0] = notes
