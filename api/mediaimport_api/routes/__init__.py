"""One router per area: media, imports, webhooks, health."""
