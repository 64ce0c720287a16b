"""What prompts achieved: outcome reports."""
