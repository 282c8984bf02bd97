"""Prethrift's Pulumi program (see infra/README.md) and its offline plan and policy pack."""
