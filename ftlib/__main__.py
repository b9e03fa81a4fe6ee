import sys

from ftlib.course.cli import main

sys.exit(main())
