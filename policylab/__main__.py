import sys

from policylab.cli import main

sys.exit(main())
