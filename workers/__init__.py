"""Celery workers: app factory, per-child model warm-up, tasks."""
