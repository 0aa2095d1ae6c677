"""The sans-I/O core: the lifecycle table, the events it takes, the actions it returns, and the
engine that decides. Nothing here imports asyncio, google-genai or the emulator (a test checks)."""

from .engine import Lifecycle
from .machine import MACHINE

__all__ = ["MACHINE", "Lifecycle"]
