"""Getting prompts to screens: live push (tokens, replay, hub) and signed webhooks."""
