"""The Celery task names, defined once: the tasks (mecc/tasks.py), the beat schedule
(celery_app) and the one send path (broker.Publisher) all use these."""

from __future__ import annotations

EVALUATE_EVENTS = "mecc.evaluate_events"
RELAY_EVENTS = "mecc.relay_events"
DELIVER_WEBHOOKS = "mecc.deliver_webhooks"
RUN_BACKTEST = "mecc.run_backtest"
ERASE_DISPLAY_LABELS = "mecc.erase_display_labels"
