"""stepstone command-line interface (Typer)."""
