"""Deployment artefacts (docs/deploy/) checked against the real tools: nginx, systemd."""
