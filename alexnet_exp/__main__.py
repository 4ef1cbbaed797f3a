"""``python -m alexnet_exp ...`` is ``alexnet-exp ...``."""

from alexnet_exp.commands import train

if __name__ == "__main__":
    train()
