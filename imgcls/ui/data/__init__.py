"""The Data page: imports."""
