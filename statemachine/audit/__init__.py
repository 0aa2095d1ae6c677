"""Audit logs: the JSON Lines writer, the checker, and the pictures drawn from a log."""

from .jsonl import JsonLinesWriter, configure

__all__ = ["JsonLinesWriter", "configure"]
