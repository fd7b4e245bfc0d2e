"""Datasets: read rows from the Hub, local files or the synthetic generator, and format them
into chat prompts with gold answers."""
