"""The benchmark suite: `make bench` (PostgreSQL). See bench/run.py."""
