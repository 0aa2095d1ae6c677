"""Audit logs: the JSON Lines writer, the checker, and the pictures drawn from a log."""

from .jsonl import JsonLinesWriter, configure
from .signing import SigningKey

__all__ = ["JsonLinesWriter", "SigningKey", "configure"]
