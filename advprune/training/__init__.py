"""The adversarial training engine and the recording of training dynamics.

One small loop, :class:`AdversarialTrainer`, trains any ``torch.nn.Module``
classifier adversarially (PGD-AT of Madry et al. 2018, or TRADES of Zhang et al.
2019). Everything around the loop is a :class:`Callback`: the progress bar and
the two recorders of training dynamics that the importance scores are computed
from.

* ``record="epoch"`` (the paper's protocol): after every epoch, the model in
  eval mode, the recorded samples unaugmented, the true-class probability on the
  clean input and on a fresh PGD input against the current model. It costs about
  one more (attack) pass over the recorded samples per epoch.
* ``record="online"``: the true-class probability of each sample's training-time
  adversarial forward pass, read off the batch the optimizer already computed.
  Nearly free, but the model is in train mode, the input may be augmented, and
  the model changes during the epoch. There is no clean series in this mode.

Started under ``torchrun``, the same loop trains data-parallel
(DistributedDataParallel, each batch split between the processes, every
callback's recordings merged after each epoch through
:meth:`Callback.recorded_arrays`).

The same engine trains the scoring run of the pruner and the
``AdversarialClassifier``; the loop is hand-written rather than built on skorch
because recording needs each batch's sample indices and the adversarial logits
of the training step, which skorch's iterator and ``train_step`` do not expose
without overriding most of both.
"""

from ._augment import RandomCropFlip
from ._device import batched_forward, resolve_device, torch_generator
from ._loop import AdversarialTrainer
from ._recording import Callback, Dynamics, EpochRecorder, OnlineRecorder
from ._tracking import PoolTracker

__all__ = [
    "AdversarialTrainer",
    "Callback",
    "Dynamics",
    "EpochRecorder",
    "OnlineRecorder",
    "PoolTracker",
    "RandomCropFlip",
    "batched_forward",
    "resolve_device",
    "torch_generator",
]
