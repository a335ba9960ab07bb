"""The refresh schedule: every five minutes, unless a refresh is still running (runs share the staging file)."""

import dagster as dg

from pipelines.jobs import refresh_warehouse

__all__ = ["IN_PROGRESS", "refresh_every_five_minutes", "refresh_in_progress"]

IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def refresh_in_progress(instance: dg.DagsterInstance) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=refresh_warehouse.name, statuses=IN_PROGRESS), limit=1)
    return bool(runs)


@dg.schedule(
    job=refresh_warehouse,
    cron_schedule="*/5 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def refresh_every_five_minutes(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Refresh the warehouse every five minutes."""
    if refresh_in_progress(context.instance):
        return dg.SkipReason("a refresh is still running")
    return dg.RunRequest()
