"""Definitions, one folder per pipeline stage; `mlops_assets.definitions` loads them all."""
