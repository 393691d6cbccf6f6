"""Candidate fixes for what the drills found, tried on the drills' snapshot only:

    python bench/drills/run.py postgres_restart --candidate pool_fail_fast \
        --gunicorn-args "--worker-class gthread --threads 4"

Each module changes the settings it imports in place (the snapshot's settings module imports it
after `from portal.settings import *`). They are evidence for a proposed change to the portal, not
part of the portal: docs/reliability.md says which change each stands for."""
