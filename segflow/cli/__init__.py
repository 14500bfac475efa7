"""Command-line interface (`segflow`)."""
