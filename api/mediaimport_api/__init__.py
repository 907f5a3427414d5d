"""The HTTP ingress that turns requests and webhooks into MediaImport resources."""
