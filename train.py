"""Train as a config says: ``python train.py --config configs/unet.yaml [--set KEY=VALUE ...]``."""

import sys

from tf_medseg.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
