"""Fault and bad-input tests: killed runs, concurrent writers, broken sources, an unavailable
MLflow store, a fuzzed and loaded endpoint, and hostile settings; each asserts a clear error and
that nothing already stored was lost."""
