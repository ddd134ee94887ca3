"""djpool's benchmark: the same request cycle through every way Django can hold a connection."""
