import sys

from cloce.cli import main

sys.exit(main())
