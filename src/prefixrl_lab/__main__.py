import sys

from prefixrl_lab.cli import main

sys.exit(main())
