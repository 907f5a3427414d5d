"""The kopf operator that reconciles MediaImport resources."""
