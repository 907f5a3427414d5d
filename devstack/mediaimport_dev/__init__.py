"""The local stack: a real control plane and node, Postgres and an S3 server."""
