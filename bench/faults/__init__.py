"""Fault injection: is every accepted event evaluated, and evaluated once, whatever breaks?

Runs the real processes on this machine: the API under gunicorn (mecc.platform.gunicorn_conf),
a Celery worker and Celery beat (the relay), against a Redis and a PostgreSQL cluster of our own (so
they can be crashed, wiped and stopped). For each scenario a load of contact events is POSTed
over HTTP while the fault is injected, then the database is checked the way Jepsen's
total-queue checker counts a queue:

  attempted   events the client tried to send
  accepted    events answered 202 (or 200: the same event again)
  evaluated   accepted events whose row is `evaluated` after a bounded settle wait
  lost        accepted but not evaluated within the bound (still queued, processing, failed,
              or missing from the database)
  duplicated  an event stored or answered twice, a prompt or suppressed match twice for one
              (event, rule), a prompt pushed twice, or more prompts than the rules give
              (each event is for a new person, so its prompts are computed independently
              with the pipeline's own `decide` and compared)

Scenarios: (a) worker children SIGKILLed mid-task, repeatedly; (b) the whole worker SIGKILLed
and restarted; (c1) Redis crashed and restarted (it keeps nothing); (c2) the broker's Redis
database wiped with FLUSHDB; (d) PostgreSQL stopped for a while during intake (only 503s, no
500s, no hangs); (e) duplicate submissions, sequential and concurrent; (f) webhook receivers
misbehaving: one answers 500, then hangs past the sender's timeout, then recovers; another takes
a few deliveries and then answers 410 Gone (see f_webhooks.run for how (f) counts).

Exits non-zero unless lost = 0, duplicated = 0, no 5xx other than 503 and no hung request in
every scenario (and, in (f), every signature verifies and nothing reaches the 410 endpoint
after it was disabled).

    .venv/bin/python -m bench.faults                    # every scenario, 1000 events each
    .venv/bin/python -m bench.faults --quick            # 100 events, fewer faults (CI)
    .venv/bin/python -m bench.faults --scenario a,d --events 300 --output bench/out/f.md

Where things are: plan (the settings of a run, the scenario names), stack (our Redis,
PostgreSQL, API, worker and beat), load (the clients), check (the table's counts from the
database), one module per scenario (a_children, b_worker, c_redis, d_postgres, e_duplicates,
f_webhooks with f_receiver and f_check), and run (the runner, the table and the entry point).
"""
