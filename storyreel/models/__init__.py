"""Model folders of third-party models that storyreel renders with through diffusers' own pipelines.

The Ingredients model has its own package (``ingredients_model``); models that diffusers implements
completely need only their folder knowledge here: layout, completeness, download, loading.
"""
