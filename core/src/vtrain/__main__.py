import sys

from vtrain.cli import main

sys.exit(main())
