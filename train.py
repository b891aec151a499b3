"""Train a building-segmentation U-Net: ``python train.py fit --config configs/<name>.yaml``."""

from sitewatch.training import main

if __name__ == "__main__":
    main()
