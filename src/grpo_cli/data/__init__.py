"""Datasets: load rows from the Hub, local files or the synthetic generator and format them into prompts."""
