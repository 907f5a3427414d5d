"""Package data: the MediaImport CRD (a link to the chart's single source file)."""
