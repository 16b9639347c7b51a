"""Former home of the timer and the statistics summary, now :mod:`fcn_deploy.timing` (the ground
floor, so that quantize/ times with it too); the names still import from here."""
from fcn_deploy.timing import (STAT_FIELDS, TimingStats, check_counts, summarize,
                               time_interleaved_calls, time_runs)

__all__ = ["STAT_FIELDS", "TimingStats", "check_counts", "summarize", "time_interleaved_calls",
           "time_runs"]
