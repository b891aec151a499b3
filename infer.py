"""Run sitewatch's analyst commands (segment, change, ...): ``python infer.py --help``."""

from sitewatch.cli import main

if __name__ == "__main__":
    main()
