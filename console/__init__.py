"""The Prethrift ops console: a Dash app over the metrics store and the offline cost model."""
