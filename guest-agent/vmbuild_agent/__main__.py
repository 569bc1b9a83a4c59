"""`python3 -m vmbuild_agent` and the zipapp entry point."""

import sys

from vmbuild_agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
