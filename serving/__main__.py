"""`python -m serving` (or `mnist-gateway`): validate settings, then serve."""

import sys

from serving.runtime.launcher import main

if __name__ == "__main__":
    sys.exit(main())
