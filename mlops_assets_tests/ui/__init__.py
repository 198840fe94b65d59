"""Browser tests of the Dagster UI: the real webserver and daemon on a prepared instance, driven by
Playwright in Debian's headless Chromium."""
