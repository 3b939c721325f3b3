"""The shipped evaluation tables (package data): read-only, located with importlib.resources
by `problems.table_directories`. README.md here is their generated datasheet."""
