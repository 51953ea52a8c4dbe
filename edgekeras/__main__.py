"""`python -m edgekeras ...` runs the `edgekeras` command."""

from edgekeras.cli import main

if __name__ == "__main__":
    main(prog_name="edgekeras")
