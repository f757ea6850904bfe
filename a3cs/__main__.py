import sys

from a3cs.cli import main

sys.exit(main())
