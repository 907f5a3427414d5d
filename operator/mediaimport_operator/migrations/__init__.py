"""Package data: versioned SQL migrations, applied in order of their NNNN_ prefix."""
