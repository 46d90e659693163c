"""Sending webhooks over HTTP: Standard Webhooks signatures, no private addresses."""

from taskcore.adapters.webhooks.poster import HttpWebhookPoster

__all__ = ["HttpWebhookPoster"]
