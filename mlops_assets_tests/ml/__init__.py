"""Tests of the Dagster-free machine-learning layer (mlops_assets.ml)."""
