"""Imports one media file from a URL into S3: download, probe, thumbnail, upload."""
