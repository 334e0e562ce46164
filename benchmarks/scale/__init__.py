"""Scale benchmarks: run each script as a module from the repository root (see RESULTS.md here)."""
