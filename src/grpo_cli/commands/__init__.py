"""One module per command (group); the CLI module only parses arguments and calls them."""
