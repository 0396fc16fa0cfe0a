"""A deterministic OpenAI-compatible echo model: the upstream for ``--demo``, tests and benchmarks.

It answers like vLLM without a response store. The generated text is the last user text, split on
whitespace; one word is one token and one stream chunk. With ``max_tokens`` (or
``max_completion_tokens`` / ``max_output_tokens``) the words repeat cyclically until exactly that
many tokens, so a benchmark can ask for a stream of any length. Input tokens are the words of every
input text the request carried (all messages, the whole ``input`` history, ``instructions``).

Like vLLM without its store it keeps nothing, so a ``previous_response_id`` is answered with 400
``previous_response_not_found``: a test can prove the middleware stripped it. Texts are
deterministic; ids are unique per request.

The app and its routing are in ``app``; each endpoint family has a module of its own (``chat``,
``responses``, ``embeddings``), sharing the request readers of ``text`` and the SSE sender of
``streaming``.
"""

from .app import EchoModel, create_echo_app

__all__ = ["EchoModel", "create_echo_app"]
