"""``python -m ferclean``: the command line, as the ``ferclean`` script runs it."""

from ferclean.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
