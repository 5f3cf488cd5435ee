"""Built-in dataset plugins."""
