"""Process plumbing: settings, runtime, database engine, Celery set-up, the one broker send path,
observability, rate limits, HTTP auth and errors.
"""
