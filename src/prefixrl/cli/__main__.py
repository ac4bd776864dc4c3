import sys

from prefixrl.cli import main

sys.exit(main())
