"""The sampling engine: schedules, initialisations, samplers and their result."""

from .api import sample
from .chain import Chain
from .init import INITS, initial_states
from .schedules import block_schedule, temperature_schedule

__all__ = ["INITS", "Chain", "block_schedule", "initial_states", "sample", "temperature_schedule"]
