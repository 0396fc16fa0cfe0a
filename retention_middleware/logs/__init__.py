"""Logs: the content-free access record, the log guard and the redaction it applies."""
