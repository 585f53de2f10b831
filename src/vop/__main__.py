import sys

from vop.cli import main

sys.exit(main())
