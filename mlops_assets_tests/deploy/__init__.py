"""Tests of the production deployment: Postgres instance storage and the read-only UI."""
