"""Generators of the documentation that is derived from the code (run by ``scripts/gen-docs``)."""
