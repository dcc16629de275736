"""`python -m jdkit`: the `jdkit` command line."""

import sys

from jdkit._cli import main

if __name__ == "__main__":
    sys.exit(main())
