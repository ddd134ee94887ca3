"""Optional integrations with monitoring tools; each needs its own third-party package."""
