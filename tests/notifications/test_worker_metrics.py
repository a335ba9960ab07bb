"""The worker runs the notification jobs and crons and serves its metrics."""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY

from core_api.notifications.jobs import Notifier
from core_api.notifications.metrics import refresh_worker_gauges, serve_worker_metrics
from core_api.outbox.dispatch import handlers_for
from core_api.storage.db import DbPool
from core_api.worker import WorkerSettings
from tests.notifications.conftest import (
    ConfirmedBooking,
    RunWorker,
    dispatch,
    payment_payload,
    write_event,
)
from tests.support.ports import free_port


def test_the_worker_runs_the_notification_jobs_and_every_mail_event_has_a_handler() -> None:
    names = {getattr(function, "name", getattr(function, "__name__", "")) for function in WorkerSettings.functions}
    assert "send_notification" in names
    crons = {job.name for job in WorkerSettings.cron_jobs}
    assert {"cron:send_reminders", "cron:requeue_stalled_mail", "cron:refresh_worker_gauges"} <= crons
    for event_type in (
        "booking.confirmed", "booking.cancelled", "payment.succeeded", "payment.failed", "payment.refunded",
        "flight.changed", "auth.register", "auth.password_reset_requested",
    ):  # fmt: skip
        assert handlers_for(event_type), event_type


async def test_gauges_show_queue_depth_outbox_backlog_and_sends_by_template(
    pool: DbPool, notifier: Notifier, run_worker: RunWorker, booking: ConfirmedBooking
) -> None:
    before = REGISTRY.get_sample_value(
        "flightdesk_notifications_total", {"template": "payment_receipt", "outcome": "sent"}
    )
    await write_event(pool, "booking.updated", ("booking", booking.id), {})  # not relayed: backlog 1
    await dispatch(pool, notifier, await write_event(pool, "payment.succeeded", ("p", 1), payment_payload(booking)))
    await refresh_worker_gauges({"notifier": notifier})
    assert REGISTRY.get_sample_value("flightdesk_worker_queue_depth") == 1
    assert REGISTRY.get_sample_value("flightdesk_outbox_backlog_events") == 2
    assert REGISTRY.get_sample_value("flightdesk_notifications_mails", {"status": "PENDING"}) == 1

    await run_worker()
    await refresh_worker_gauges({"notifier": notifier})
    assert REGISTRY.get_sample_value("flightdesk_worker_queue_depth") == 0
    assert REGISTRY.get_sample_value("flightdesk_notifications_mails", {"status": "SENT"}) == 1
    after = REGISTRY.get_sample_value(
        "flightdesk_notifications_total", {"template": "payment_receipt", "outcome": "sent"}
    )
    assert (after or 0) - (before or 0) == 1

    port = free_port()
    serve_worker_metrics(port)
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    assert "flightdesk_worker_queue_depth" in text
    assert 'flightdesk_notifications_total{outcome="sent",template="payment_receipt"}' in text
