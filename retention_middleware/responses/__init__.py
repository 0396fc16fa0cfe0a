"""The Responses API made stateful in front of a stateless upstream."""

from .create import CreateResponseHandler
from .served import StoredResponseHandler

__all__ = ["CreateResponseHandler", "StoredResponseHandler"]
