"""Persistence: SQLAlchemy models and Alembic migrations."""
