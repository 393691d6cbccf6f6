# The Celery app is loaded with Django, so `shared_task` in each app's tasks.py binds to it
# (as cookiecutter-django does).
from portal.celery import app as celery_app

__all__ = ("celery_app",)
