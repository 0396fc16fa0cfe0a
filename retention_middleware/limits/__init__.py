"""Bounds on what one request may make the process hold or wait for: header size and count."""
