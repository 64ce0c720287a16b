"""Accepting contact events (single and batch): schemas, pseudonyms, storing with queue state."""
