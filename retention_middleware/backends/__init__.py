"""How a Responses request reaches the upstream: natively, or translated to Chat Completions."""
