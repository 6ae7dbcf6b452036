"""Recurring jobs: schedules defined in code or config, ticked by every worker with no leader."""

from .control import ScheduleInfo, Schedules
from .schedule import CatchUp, Schedule
from .scheduler import Scheduler
from .timing import Cron, Every, Timing, tick_id

__all__ = [
    "CatchUp",
    "Cron",
    "Every",
    "Schedule",
    "ScheduleInfo",
    "Scheduler",
    "Schedules",
    "Timing",
    "tick_id",
]
