"""OpenAI's Conversations API, served by the middleware from the store under the retention period."""

from .handler import ConversationsHandler
from .turn import ConversationTurn

__all__ = ["ConversationTurn", "ConversationsHandler"]
