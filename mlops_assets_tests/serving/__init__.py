"""Tests of the online prediction endpoint (mlops_assets.serving) and its request log."""
