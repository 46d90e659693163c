"""Completion webhooks: registering endpoints (``WebhookAdmin``) and sending
the deliveries the store makes when tasks end (``WebhookSender``)."""

from taskcore.webhooks.admin import WebhookAdmin
from taskcore.webhooks.sender import WebhookSender

__all__ = ["WebhookAdmin", "WebhookSender"]
