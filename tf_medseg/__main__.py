import sys

from tf_medseg.cli import main

sys.exit(main())
