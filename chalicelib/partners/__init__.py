"""Partners: calls to the channels' back ends (pinned, signed), the outbox and webhooks."""
