"""Atomic per-epoch checkpoints of a training run, and resuming from them."""

import os
from pathlib import Path

import torch

from .._io import replacing

__all__ = []


class _Checkpoint:
    """Atomic per-epoch checkpoints of a training run, and their restoring."""

    FILE = "checkpoint.pt"

    def __init__(self, directory, run_key):
        self.path = Path(directory) / self.FILE
        self.run_key = run_key
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"checkpoint_dir {str(directory)!r} cannot be created: {exc}"
            ) from exc
        if not os.access(self.path.parent, os.W_OK):
            raise ValueError(f"checkpoint_dir {str(directory)!r} is not writable.")

    def save(self, trainer, callbacks):
        state = {
            "run_key": self.run_key,
            "epoch": trainer.epoch_,
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer_.state_dict(),
            "scheduler": trainer.scheduler_.state_dict(),
            "scaler": trainer.scaler_.state_dict(),
            "generator": trainer.generator_.get_state(),
            "history": trainer.history_,
            "callbacks": [callback.state_dict() for callback in callbacks],
        }
        with replacing(self.path) as temporary, open(temporary, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())

    def restore(self, trainer, callbacks):
        """Load the saved state into ``trainer``; return the first epoch to run."""
        if not self.path.exists():
            return 0
        state = torch.load(self.path, map_location=trainer.device_, weights_only=True)
        if state["run_key"] != self.run_key:
            raise ValueError(
                f"checkpoint_dir {str(self.path.parent)!r} holds a checkpoint of a "
                "different run (other data, parameters or initial weights); use "
                "an empty directory."
            )
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer_.load_state_dict(state["optimizer"])
        trainer.scheduler_.load_state_dict(state["scheduler"])
        trainer.scaler_.load_state_dict(state["scaler"])
        trainer.generator_.set_state(state["generator"])
        trainer.history_ = list(state["history"])
        if len(state["callbacks"]) != len(callbacks):
            raise ValueError(
                f"checkpoint_dir {str(self.path.parent)!r} holds a checkpoint of a "
                f"run with {len(state['callbacks'])} recording callbacks, not "
                f"{len(callbacks)}; use an empty directory."
            )
        for callback, saved in zip(callbacks, state["callbacks"], strict=True):
            callback.load_state_dict(saved)
        return state["epoch"] + 1
