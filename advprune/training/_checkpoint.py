"""Atomic per-epoch checkpoints of a training run, verified before they are restored.

A checkpoint is one file, ``checkpoint.pt``, that ``torch.load(path,
weights_only=True)`` reads as ``{"format": 1, "sha256": ..., "state": ...}``:
``state`` holds the bytes of the ``torch.save`` of the run's state and
``sha256`` their digest. The digest is checked before anything is restored, so
that a damaged or edited checkpoint (a flipped bit on disk, a truncated copy)
is refused instead of resuming into a different result. Refused rather than
set aside and started over: a damaged file means storage that cannot be
trusted, or a change somebody made on purpose, and starting over silently would
throw away the epochs already trained; deleting the file is the user's choice.
"""

import hashlib
import io
import os
from pathlib import Path

import torch

from .._io import remove_stale_temporaries, replacing

__all__ = []

# 2: the training attack's generator is saved beside the trainer's own.
_FORMAT = 2


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
        remove_stale_temporaries(self.path)

    def save(self, trainer, callbacks):
        state = {
            "run_key": self.run_key,
            "epoch": trainer.epoch_,
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer_.state_dict(),
            "scheduler": trainer.scheduler_.state_dict(),
            "scaler": trainer.scaler_.state_dict(),
            "generator": trainer.generator_.get_state(),
            "attack_generator": trainer.attack_generator_.get_state(),
            "history": trainer.history_,
            "callbacks": [callback.state_dict() for callback in callbacks],
        }
        payload = io.BytesIO()
        torch.save(state, payload)
        payload = bytearray(payload.getbuffer())
        record = io.BytesIO()
        torch.save(
            {
                "format": _FORMAT,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "state": torch.frombuffer(payload, dtype=torch.uint8),
            },
            record,
        )
        # Serialised in memory and written with plain file writes, so that a
        # full disk is an OSError (ENOSPC), not an error of torch's zip writer.
        try:
            with replacing(self.path) as temporary, open(temporary, "wb") as fh:
                fh.write(record.getbuffer())
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot write the checkpoint {str(self.path)!r}: "
                f"{exc.strerror or exc}",
            ) from exc

    def restore(self, trainer, callbacks):
        """Load the saved state into ``trainer``; return the first epoch to run."""
        if not self.path.exists():
            return 0
        # Read onto the CPU: the model and optimizer copy their tensors to
        # the training device as they load them, and generator states and
        # the callbacks' recordings must stay on the CPU.
        state = read_checkpoint(self.path)
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
        trainer.attack_generator_.set_state(state["attack_generator"])
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


def read_checkpoint(path):
    """The state a checkpoint holds, once its digest is verified.

    Whatever is wrong with the file (truncated, a flipped bit, edited, not a
    checkpoint), the error is one ``ValueError`` that names it and says how
    to start over; torch's own errors for a damaged file (``EOFError``,
    ``KeyError``, zip reader errors, ``UnpicklingError``) say neither.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot read the checkpoint {str(path)!r}: {exc.strerror or exc}",
        ) from exc
    try:
        record = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if (
            not isinstance(record, dict)
            or record.get("format") != _FORMAT
            or not isinstance(record.get("state"), torch.Tensor)
            or record["state"].dtype != torch.uint8
            or record["state"].ndim != 1
        ):
            raise _Damaged("it is not a checkpoint of this version of advprune")
        payload = record["state"].numpy().tobytes()
        if hashlib.sha256(payload).hexdigest() != record.get("sha256"):
            raise _Damaged("its contents do not match their SHA-256 digest")
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except _Damaged as exc:
        reason = str(exc)
    except Exception as exc:  # every way torch.load fails on a damaged file
        reason = f"it cannot be read: {type(exc).__name__}"
    else:
        return state
    raise ValueError(
        f"the checkpoint {str(path)!r} is damaged ({reason}); nothing was "
        "restored from it. Delete it to start the run over, or pass an empty "
        "checkpoint_dir."
    )


class _Damaged(Exception):
    """A checkpoint that was read but is not what it claims to be."""
