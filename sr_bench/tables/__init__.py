"""The paper's tables, regenerated from the registry and the published numbers in ``baselines/``."""
