"""The clinical core: catalogue, value sets, rule packs, RuleSet evaluation, suppression and the
services directory. Pure: no Flask, Celery or SQLAlchemy.
"""
