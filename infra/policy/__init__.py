"""Prethrift's policy pack (FSBP controls); rules in rules.py, the pack in __main__.py."""
