import sys
from pathlib import Path

from prefixrl_lab.reports import render

for arg in sys.argv[1:]:
    render(Path(arg))
