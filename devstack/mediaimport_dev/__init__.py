"""The local stack: a real control plane, a node agent, Postgres and an S3 server."""
