"""Tests of the mlops_assets pipeline."""
