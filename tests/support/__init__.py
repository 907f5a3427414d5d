"""Shared test helpers: real media made with ffmpeg, and a misbehaving HTTP origin."""
