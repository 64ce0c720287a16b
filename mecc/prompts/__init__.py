"""Prompts for staff screens: listing and recording outcomes."""
