"""``python -m alexnet_exp ...`` is ``alexnet-exp ...``."""

from alexnet_exp.cli import train_main

if __name__ == "__main__":
    train_main()
