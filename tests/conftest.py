"""Shared pytest set-up. Fixtures for PostgreSQL and the control plane live in their folders."""
