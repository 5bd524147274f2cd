"""`python -m launchq_demo`, what `make demo` runs: exit 0 only if every item ended as expected."""

import sys

from launchq_demo.demo import main

sys.exit(main())
