"""Mail through the job queue: the one seam every mail of the portal passes (allauth's
verification, reset and security notices, and the portal's own, such as the account-deletion
notice), since all of them are sent through Django's EMAIL_BACKEND.

`QueuedEmailBackend` (settings' EMAIL_BACKEND) turns each message into JSON and, once the
current transaction commits (a mail about a sign-up that rolled back is never sent), queues
`send_email`. A worker sends it with the backend of EMAIL_URL (EMAIL_DELIVERY_BACKEND). A
transient failure (the mail server unreachable, timing out, or answering 4xx) is tried again
MAIL_MAX_RETRIES times, MAIL_RETRY_DELAY seconds later and twice as long each time; a mail that
fails for good (5xx, or out of tries) is logged by its Message-ID, recipient count and error
(never its body, which holds verification and reset links) and signalled (`mail_failed`, which
monitoring counts as portal_mail_failed_total), then the task fails, so it counts as failed
too. Every try carries the same Message-ID.

If the broker cannot be reached when a mail is queued, the mail is sent from this process
instead, as it was before the queue, and logged.

Written here rather than taken from django-celery-email: that package was last released in
2019 (for Celery 4), and its maintained fork queues at once rather than after the commit,
retries any error alike and neither logs nor counts a mail given up.
"""

from __future__ import annotations

import base64
import logging
import smtplib
from collections.abc import Sequence
from email.mime.base import MIMEBase
from functools import partial
from typing import Any

from billiard.exceptions import SoftTimeLimitExceeded
from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import make_msgid
from django.core.mail.utils import DNS_NAME
from django.db import transaction
from django.dispatch import Signal
from kombu.exceptions import OperationalError

logger = logging.getLogger("core.mail")

# Sent (sender=QueuedEmailBackend) for each mail given up, with `reason`: "permanent" (the server
# refused it for good, or it could not be built), "retries_exhausted" (transient errors, every try),
# "not_queued" (no broker, and sending it in place failed too).
mail_failed = Signal()

TASK_NAME = "core.mail.send_email"


class MailNotSent(Exception):
    """A mail given up. Its text names the Message-ID and the error's kind only."""


# --- Message <-> JSON ----------------------------------------------------------------------------


def message_id(payload: dict[str, Any]) -> str:
    return str(payload["headers"].get("Message-ID", ""))


def serialise(message: EmailMessage) -> dict[str, Any]:
    """A message as JSON-safe data; its Message-ID fixed now, so every try sends the same one."""
    headers = {str(name): str(value) for name, value in message.extra_headers.items()}
    if not any(name.lower() == "message-id" for name in headers):
        headers["Message-ID"] = make_msgid(domain=DNS_NAME)
    attachments = []
    for attachment in message.attachments:
        if isinstance(attachment, MIMEBase):
            raise TypeError("core.mail queues attachments given as (filename, content, mimetype) only")
        filename, content, mimetype = attachment
        data = content.encode() if isinstance(content, str) else bytes(content)
        attachments.append([filename, base64.b64encode(data).decode(), mimetype, isinstance(content, str)])
    return {
        "subject": str(message.subject),
        "body": str(message.body),
        "from_email": str(message.from_email),
        "to": [str(address) for address in message.to],
        "cc": [str(address) for address in message.cc],
        "bcc": [str(address) for address in message.bcc],
        "reply_to": [str(address) for address in message.reply_to],
        "headers": headers,
        "alternatives": [[str(content), mimetype] for content, mimetype in getattr(message, "alternatives", [])],
        "attachments": attachments,
        "content_subtype": message.content_subtype,
        "encoding": message.encoding,
    }


def deserialise(payload: dict[str, Any]) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        subject=payload["subject"],
        body=payload["body"],
        from_email=payload["from_email"],
        to=payload["to"],
        cc=payload["cc"],
        bcc=payload["bcc"],
        reply_to=payload["reply_to"],
        headers=payload["headers"],
    )
    for content, mimetype in payload["alternatives"]:
        message.attach_alternative(content, mimetype)
    for filename, data, mimetype, is_text in payload["attachments"]:
        raw = base64.b64decode(data)
        message.attach(filename, raw.decode() if is_text else raw, mimetype)
    message.content_subtype = payload["content_subtype"]
    message.encoding = payload["encoding"]
    return message


# --- Which failures are worth another try ----------------------------------------------------------


def is_transient(error: BaseException) -> bool:
    """A failure that may pass: the server unreachable, disconnecting or timing out, or answering
    4xx ("try again later"). A 5xx answer, or a message that cannot be built, will not."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return any(code < 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return bool(error.smtp_code < 500)
    return isinstance(error, smtplib.SMTPException | OSError | SoftTimeLimitExceeded)


def describe(error: BaseException) -> str:
    """The error's kind and SMTP code, never its text (a server may echo the recipient or more)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in error.recipients.values()})
        return f"{type(error).__name__} {','.join(map(str, codes))}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__} {error.smtp_code}"
    if isinstance(error, OSError) and error.errno:
        return f"{type(error).__name__} errno {error.errno}"
    return type(error).__name__


def retry_delay(retries: int) -> int:
    """Seconds before try number `retries` + 2: MAIL_RETRY_DELAY, doubled each time, capped."""
    return int(min(settings.MAIL_RETRY_DELAY_MAX, settings.MAIL_RETRY_DELAY * 2**retries))


def _give_up(payload: dict[str, Any], error: BaseException, *, attempts: int, reason: str) -> MailNotSent:
    logger.error(
        "Mail %s to %d recipient(s) given up after %d attempt(s) (%s): %s.",
        message_id(payload),
        len(payload["to"]) + len(payload["cc"]) + len(payload["bcc"]),
        attempts,
        reason,
        describe(error),
    )
    mail_failed.send(sender=QueuedEmailBackend, reason=reason)
    return MailNotSent(f"mail {message_id(payload)} not sent ({reason}): {describe(error)}")


def deliver(payload: dict[str, Any]) -> None:
    """Send one queued message with the real backend (EMAIL_URL's)."""
    connection = get_connection(settings.EMAIL_DELIVERY_BACKEND, fail_silently=False)
    connection.send_messages([deserialise(payload)])


# --- The task ------------------------------------------------------------------------------------


def _send_email(self: Any, payload: dict[str, Any]) -> None:
    try:
        deliver(payload)
    except Exception as error:
        attempts = self.request.retries + 1
        # Eager (no broker): one try, as before the queue; waiting in place would hold the request.
        if is_transient(error) and not self.request.is_eager and self.request.retries < settings.MAIL_MAX_RETRIES:
            delay = retry_delay(self.request.retries)
            logger.warning(
                "Mail %s not sent on attempt %d of %d (%s); trying again in %d s.",
                message_id(payload),
                attempts,
                settings.MAIL_MAX_RETRIES + 1,
                describe(error),
                delay,
            )
            raise self.retry(
                countdown=delay, max_retries=settings.MAIL_MAX_RETRIES, exc=MailNotSent(describe(error))
            ) from None
        reason = "retries_exhausted" if is_transient(error) else "permanent"
        raise _give_up(payload, error, attempts=attempts, reason=reason) from None


# A task that must not be lost: acknowledged after it ran, handed back if its worker dies. Not
# written as a decorator: Celery ships no type hints.
send_email = shared_task(bind=True, name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)(_send_email)


# --- The backend ---------------------------------------------------------------------------------


def _enqueue(payload: dict[str, Any]) -> None:
    try:
        send_email.apply_async(args=[payload])
    except OperationalError as error:
        # No broker to hand it to: send it now, from here, rather than drop it.
        logger.error("Mail %s could not be queued (%s); sending it from this process.", message_id(payload), error)
        try:
            deliver(payload)
        except Exception as failure:
            raise _give_up(payload, failure, attempts=1, reason="not_queued") from None


class QueuedEmailBackend(BaseEmailBackend):
    """Django's mail backend for the whole portal: queues each message after the commit."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        payloads = [serialise(message) for message in email_messages]
        for payload in payloads:
            transaction.on_commit(partial(_enqueue, payload))
        return len(payloads)
