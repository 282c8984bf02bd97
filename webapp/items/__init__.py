"""The catalog: listing items, their status, and their removal from search."""
