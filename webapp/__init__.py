"""Prethrift search service: CLIP search over a second-hand clothing catalog."""
