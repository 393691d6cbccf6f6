"""Every mail through the queue (core/mail.py), in this process with eager tasks (the embedded
defaults): queued only once its transaction commits, sent whole, a failure logged without the
message and counted, and sent in place when no broker can be reached."""

from __future__ import annotations

import logging
import os
import smtplib
import subprocess
import sys

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives, send_mail
from django.db import transaction
from django.test import override_settings
from prometheus_client import REGISTRY

from core.mail import MailNotSent, deserialise, is_transient, serialise
from tests.jobs.workers import SmtpSink
from tools.servers import ROOT, free_port

QUEUED = override_settings(
    EMAIL_BACKEND="core.mail.QueuedEmailBackend", EMAIL_DELIVERY_BACKEND="django.core.mail.backends.locmem.EmailBackend"
)
SECRET_LINK = "https://portal.example/accounts/password/reset/key/abc-secret-key-123/"


def mail_failed(reason: str) -> float:
    return REGISTRY.get_sample_value("portal_mail_failed_total", {"reason": reason}) or 0.0


def test_the_portal_sends_every_mail_through_the_queue(settings):
    # pytest-django swaps EMAIL_BACKEND for its outbox, so this reads the module itself.
    from portal import settings as portal_settings

    assert portal_settings.EMAIL_BACKEND == "core.mail.QueuedEmailBackend"
    assert portal_settings.EMAIL_DELIVERY_BACKEND == "django.core.mail.backends.console.EmailBackend"


@pytest.mark.django_db(transaction=True)
def test_a_mail_is_queued_once_its_transaction_commits_and_never_if_it_rolls_back():
    with QUEUED:
        with transaction.atomic():
            send_mail("Committed", "body", None, ["alice@example.com"])
            assert mail.outbox == []  # not before the commit
        assert [message.subject for message in mail.outbox] == ["Committed"]

        def sign_up_that_fails() -> None:
            with transaction.atomic():
                send_mail("Rolled back", "body", None, ["bob@example.com"])
                raise RuntimeError("the sign-up failed")

        with pytest.raises(RuntimeError):
            sign_up_that_fails()
        assert [message.subject for message in mail.outbox] == ["Committed"]


def test_a_queued_message_arrives_whole_with_the_message_id_fixed_when_queued():
    message = EmailMultiAlternatives(
        "Subject", "text body", "Portal <portal@example.com>", ["to@example.com"],
        bcc=["bcc@example.com"], cc=["cc@example.com"], reply_to=["reply@example.com"], headers={"X-Tag": "1"},
    )  # fmt: skip
    message.attach_alternative("<p>html body</p>", "text/html")
    message.attach("notes.txt", "some text", "text/plain")
    message.attach("data.bin", b"\x00\x01\xff", "application/octet-stream")

    payload = serialise(message)
    again = deserialise(payload)

    assert payload["headers"]["Message-ID"].startswith("<")
    assert again.message()["Message-ID"] == payload["headers"]["Message-ID"]  # every try: the same id
    assert (again.subject, again.body, again.from_email) == ("Subject", "text body", "Portal <portal@example.com>")
    assert (again.to, again.cc, again.bcc, again.reply_to) == (
        ["to@example.com"], ["cc@example.com"], ["bcc@example.com"], ["reply@example.com"]
    )  # fmt: skip
    assert again.extra_headers["X-Tag"] == "1"
    assert list(again.alternatives) == [("<p>html body</p>", "text/html")]
    assert [tuple(attachment) for attachment in again.attachments] == [
        ("notes.txt", "some text", "text/plain"),
        ("data.bin", b"\x00\x01\xff", "application/octet-stream"),
    ]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (smtplib.SMTPConnectError(421, b"busy"), True),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (ConnectionRefusedError(111, "refused"), True),
        (TimeoutError("timed out"), True),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"mailbox busy")}), True),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no such user")}), False),
        (smtplib.SMTPDataError(554, b"rejected"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
        (ValueError("header has a newline"), False),
    ],
)
def test_only_failures_that_may_pass_are_tried_again(error, transient):
    assert is_transient(error) is transient


@pytest.mark.django_db(transaction=True)
def test_a_mail_given_up_is_logged_without_its_body_and_counted(caplog):
    sink = SmtpSink(refuse_first=99)
    before = mail_failed("retries_exhausted")
    with (
        sink.serving() as url,
        override_settings(
            EMAIL_BACKEND="core.mail.QueuedEmailBackend",
            EMAIL_DELIVERY_BACKEND="django.core.mail.backends.smtp.EmailBackend",
            EMAIL_HOST="127.0.0.1",
            EMAIL_PORT=int(url.rsplit(":", 1)[1]),
        ),
    ):
        caplog.set_level(logging.INFO)
        # Eager: the one try happens here, and its failure reaches the caller.
        with pytest.raises(MailNotSent):
            send_mail("Reset your password", f"Follow {SECRET_LINK}", None, ["alice@example.com"])

    assert mail_failed("retries_exhausted") == before + 1
    given_up = [record for record in caplog.records if record.name == "core.mail"]
    assert len(given_up) == 1
    line = given_up[0].getMessage()
    assert "given up after 1 attempt(s) (retries_exhausted): SMTPConnectError 421" in line
    assert "<" in line  # the Message-ID
    assert "secret" not in caplog.text
    assert "alice@example.com" not in caplog.text


def test_with_the_broker_unreachable_a_mail_is_sent_from_the_process_that_queued_it(tmp_path):
    sink = SmtpSink()
    with sink.serving() as email_url:
        env = {
            **{name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")},
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "EMAIL_URL": email_url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        }
        code = (
            "import django; django.setup(); from django.core.mail import send_mail; "
            "send_mail('Hi', 'body', None, ['a@example.com'])"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    assert result.returncode == 0, result.stderr
    assert "could not be queued" in result.stderr
    assert [str(message["Subject"]) for message in sink.messages] == ["Hi"]
