"""Helpers shared by test modules: small projects built from the example cast, and ffmpeg-made media."""
