"""Render engines: one protocol (:mod:`storyreel.engines.base`), the full Ingredients model, a CPU preview."""
