"""SMTP delivery through aiosmtplib, and the local catcher ``flightdesk up`` runs when no server is configured.

:class:`Mailer` builds a multipart message (plain text first, HTML as the alternative) and sends it with the
``FLIGHTDESK_SMTP_*`` settings: plain, STARTTLS or implicit TLS, with a login when one is given. Every way
delivery can fail (refused connection, timeout, a 4xx/5xx answer, a TLS error) is raised as :class:`DeliveryError`,
which the send job turns into arq's ``Retry``.

:class:`MailCatcher` is an aiosmtpd server writing each mail it receives as an ``.eml`` file into a folder
(``<state_dir>/mail`` under ``flightdesk up``), written to a temporary name and renamed, so a reader never sees
half a file.
"""

from __future__ import annotations

import email.utils
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosmtplib

if TYPE_CHECKING:
    from core_api.notifications.rendering import Rendered
    from core_api.settings import SmtpSettings

__all__ = ["CATCHER_HOST", "DeliveryError", "MailCatcher", "Mailer", "build_message"]

CATCHER_HOST = "127.0.0.1"


class DeliveryError(Exception):
    """The SMTP server could not be reached or did not accept the mail; the message says why."""


def build_message(sender: str, recipient: str, rendered: Rendered, *, notification_id: uuid.UUID) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = rendered.subject
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    # One Message-ID per notification: a mail that did go out twice (worker killed after the server accepted it,
    # before the row was marked) is recognisable as one by the receiving side.
    message["Message-ID"] = f"<{notification_id}@flightdesk>"
    message["X-Flightdesk-Notification"] = str(notification_id)
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


@dataclass(frozen=True)
class Mailer:
    host: str
    port: int
    security: str = "none"
    username: str | None = None
    password: str | None = None
    sender: str = "Flightdesk <no-reply@flightdesk.local>"
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, smtp: SmtpSettings) -> Mailer:
        return cls(
            host=smtp.host or CATCHER_HOST,
            port=smtp.port,
            security=smtp.security,
            username=smtp.username,
            password=smtp.password,
            sender=smtp.from_address,
            timeout=smtp.timeout_seconds,
        )

    async def send(self, message: EmailMessage) -> None:
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.security == "tls",
                start_tls=self.security == "starttls",
                timeout=self.timeout,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:1000]) from exc


class _EmlWriter:
    """aiosmtpd handler: one ``.eml`` file per mail received."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content or envelope.content
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        temporary = self.directory / f".{name}.tmp"
        temporary.write_bytes(content)
        os.replace(temporary, self.directory / f"{name}.eml")
        return "250 Message accepted for delivery"


class MailCatcher:
    """A local SMTP server (aiosmtpd, on a thread of its own) that keeps every mail as a file in ``directory``."""

    def __init__(self, directory: Path, *, host: str = CATCHER_HOST, port: int = 1025) -> None:
        from aiosmtpd.controller import Controller

        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._controller = Controller(_EmlWriter(directory), hostname=host, port=port)

    @property
    def address(self) -> tuple[str, int]:
        return self._controller.hostname, self._controller.port

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
