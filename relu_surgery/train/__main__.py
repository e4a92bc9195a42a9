"""``python -m relu_surgery.train ...`` and ``torchrun --nproc_per_node=N -m relu_surgery.train ...``."""

from relu_surgery.train.command import train_command

__all__: list[str] = []

if __name__ == "__main__":
    train_command(prog_name="python -m relu_surgery.train")
