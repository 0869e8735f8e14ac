"""Load tests and benchmarks of the served pipeline (run as `python -m benchmarks.<name>`)."""
