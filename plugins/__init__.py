"""fusionkit's built-in plugins. Each module is named by an entry point in pyproject.toml;
the core never imports them by name."""
