"""The ``scivae`` command-line interface (installed as the package ``scivae_cli``)."""
