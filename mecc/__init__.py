"""MECC Prompts: contact events in, person-centred Making Every Contact Count prompts out."""

__version__ = "0.1.0"
