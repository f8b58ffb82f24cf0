"""Security catalogue: attacks run from inside real sandboxes of every kind."""
