"""Helpers shared across test folders: real services (git servers, Redis) as context managers."""
