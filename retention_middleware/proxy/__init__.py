"""retention-proxy: the streaming forwarder, the downstream body it relays, and the command line."""
