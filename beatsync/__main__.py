import sys

from beatsync.cli import main

sys.exit(main())
