"""Notifications (SPEC §7): mails from outbox events, sent once through SMTP by arq jobs, with their history.

``schemas`` (template contexts, wire types), ``rendering`` (the Jinja2 templates, compiled once), ``delivery``
(aiosmtplib, the local catcher), ``service`` (queueing once per event and recipient, the admin's views),
``notifier`` (what jobs and handlers share), ``handlers`` (the outbox handlers; importing it registers them),
``jobs`` (the send job, reminders, the stalled-mail sweep), ``metrics`` (the worker's Prometheus port) and
``routes`` (``/notifications``).
"""
