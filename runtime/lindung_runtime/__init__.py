"""The one shared runtime of Lindung's services.

Everything every service needs exactly once: settings, broker wiring (including the embedded
broker), structured logging with NIK masking, tracing, the database session, the inbox, the
outbox relay and the dead-letter step. Services hold only their own rules and tables.
"""

from lindung_runtime.clock import Clock, FixedClock, SystemClock
from lindung_runtime.errors import NotReadyYet, PermanentError
from lindung_runtime.outbox import UnitOfWork
from lindung_runtime.service import Service
from lindung_runtime.settings import LindungSettings

__all__ = [
    "Clock",
    "FixedClock",
    "LindungSettings",
    "NotReadyYet",
    "PermanentError",
    "Service",
    "SystemClock",
    "UnitOfWork",
]
