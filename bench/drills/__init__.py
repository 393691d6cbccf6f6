"""Fault drills: the portal under load on loopback while Redis, PostgreSQL or a gunicorn worker
fails, and concurrent writers on one member. `python bench/drills/run.py --help`."""
