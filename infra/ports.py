"""The ports the app containers listen on, defined once for the load balancer's target
groups, the tasks' security group and the containers' port mappings and environment.

They match the app's own defaults (`webapp.config.Settings.port` and `.console_port`)."""

from __future__ import annotations

API_PORT = 8000
CONSOLE_PORT = 8050
APP_PORTS = (API_PORT, CONSOLE_PORT)
# The worker's Prometheus metrics, on loopback only: its task's collector scrapes them.
WORKER_METRICS_PORT = 9464
