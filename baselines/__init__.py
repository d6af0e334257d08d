"""Package data, not code: installed as ``sr_bench._baselines`` (see ``pyproject.toml``) and read by
``sr_bench.baselines``. The CSV files and their sources are described in this folder's README."""
