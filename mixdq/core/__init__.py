"""Shared leaves of the engine, importing nothing of it: errors, JSON configs and atomic writes,
bit-widths, devices and memory, image metrics, log hygiene, where the shipped assets are."""
