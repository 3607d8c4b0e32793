"""Thin entrypoints: parse arguments and config, call the library, print the result."""
