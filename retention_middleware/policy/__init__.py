"""The documented exceptions to zero retention: opt-in content logging, logged-model disclosure, and erasure."""
