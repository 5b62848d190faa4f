"""Entry point for ``python -m jobd`` and the frozen binary."""

import sys

from jobd.cli import main

if __name__ == "__main__":
    sys.exit(main())
