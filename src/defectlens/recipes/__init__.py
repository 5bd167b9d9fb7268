"""Shipped training recipes (YAML), read with :func:`defectlens.workflows.recipes.load_recipe`."""
