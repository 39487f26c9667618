"""`python -m driftway`: the same as the `driftway` command."""

from driftway.app.cli import main

if __name__ == "__main__":
    main()
