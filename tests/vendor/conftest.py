# Vendored specs are run by the tests that import them, not collected on their own.
collect_ignore_glob = ["*.py"]
