"""Embedding: the CLIP model, micro-batching, photo preprocessing, and the job queue its worker drains."""
