"""`python -m imgcls VERB …`: the command line (imgcls.cli)."""

import sys

from imgcls.cli import main

if __name__ == "__main__":
    sys.exit(main())
