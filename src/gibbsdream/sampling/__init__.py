"""The sampling engine: schedules, initialisations, samplers and their result."""

from .api import sample
from .chain import FREE_ENERGY, LOG_PROBABILITY, Chain, TraceKind
from .init import INITS, initial_states
from .schedules import block_schedule, temperature_schedule

__all__ = [
    "FREE_ENERGY",
    "INITS",
    "LOG_PROBABILITY",
    "Chain",
    "TraceKind",
    "block_schedule",
    "initial_states",
    "sample",
    "temperature_schedule",
]
