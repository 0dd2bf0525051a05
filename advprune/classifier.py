"""AdversarialClassifier: an adversarially trained torch model behind sklearn's face.

The classifier is trained by the same engine as the pruner's scoring run
(:class:`advprune.training.AdversarialTrainer`), so PGD-AT and TRADES mean the
same thing in both places, and it is the natural final step of a pruning
pipeline (:func:`advprune.make_pipeline`). ``score`` is clean accuracy, as for
any scikit-learn classifier; accuracy under attack is
:func:`advprune.metrics.robust_accuracy`.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import issparse
from scipy.special import softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ._validation import (
    TRAINING_CONSTRAINTS,
    check_bounds,
    check_channels_first,
    check_model_output,
    encode_labels,
    scan_rows,
    training_params,
)
from .models import build_model
from .training import AdversarialTrainer, batched_forward, resolve_device

__all__ = ["AdversarialClassifier"]


class AdversarialClassifier(ClassifierMixin, BaseEstimator):
    """A torch classifier trained adversarially (PGD-AT or TRADES).

    Wraps :class:`advprune.training.AdversarialTrainer` as a scikit-learn
    classifier: ``fit`` trains a fresh copy of ``model``, ``predict_proba`` is
    the softmax of its logits in eval mode and ``score`` is clean accuracy.
    Labels may be of any type; they are encoded with a ``LabelEncoder``.

    Parameters
    ----------
    model : torch.nn.Module or None, default=None
        Template network mapping a batch shaped like ``X`` to logits with one
        column per class. It is deep-copied and the copy trained, so the
        template is never modified; its current weights are the starting point.
        ``None`` builds :func:`advprune.models.default_model` for the sample
        shape and the number of classes (an MLP for flat features, a small CNN
        for small images, a PreAct-ResNet-18 for 3x32x32 images).
    method : {"pgd", "trades", "standard"}, default="pgd"
        ``"pgd"``: PGD adversarial training (Madry et al. 2018). ``"trades"``:
        TRADES (Zhang et al. 2019) with trade-off ``beta``. ``"standard"``: no
        attack (an undefended baseline).
    eps : float, default=8/255
        Attack budget in the scale of the inputs (images in [0, 1]). Also the
        default budget of :func:`advprune.metrics.robust_accuracy`.
    norm : {"linf", "l2"}, default="linf"
        Norm of the attack ball.
    attack_steps : int, default=10
        PGD steps of the training attack.
    step_size : float or None, default=None
        PGD step; ``None`` uses ``2.5 * eps / attack_steps``.
    beta : float, default=6.0
        TRADES trade-off between clean loss and robustness; ignored otherwise.
    epochs : int, default=10
        Passes over the training data.
    batch_size : int, default=128
        Training batch size; prediction uses batches four times as large.
    optimizer : {"sgd", "adam"}, default="sgd"
        SGD uses Nesterov momentum.
    lr : float, default=0.1
        Peak learning rate.
    momentum : float, default=0.9
        SGD momentum.
    nesterov : bool, default=True
        Nesterov momentum (SGD only).
    weight_decay : float, default=5e-4
        L2 penalty on all parameters.
    schedule : {"cosine", "multistep", "constant"}, default="cosine"
        Learning-rate schedule, stepped after every batch.
    bounds : tuple of (float, float) or None, default=(0.0, 1.0)
        Box of valid inputs that the attacks stay in. ``None`` for unbounded
        features (e.g. standardised tabular data).
    augment : callable or None, default=None
        Augmentation of training batches, ``augment(x_batch, generator) ->
        x_batch``, e.g. :class:`advprune.training.RandomCropFlip` for
        CIFAR-style images; never applied to predictions or attacks at evaluation.
        It is tried on two samples before training, so that one that cannot
        work on the data fails first.
    device : str or torch.device, default="auto"
        ``"auto"`` trains and predicts on CUDA when available, else the CPU.
    amp : bool or {"float16", "bfloat16"}, default=False
        Mixed-precision training: ``"float16"`` (or ``True``) on CUDA, ignored
        with a warning on the CPU; ``"bfloat16"`` on CUDA or the CPU (see
        :class:`~advprune.training.AdversarialTrainer`).
    random_state : int, RandomState or None, default=None
        Seeds the model's initialisation, the batch order and the attacks'
        random starts. The global torch random state is left untouched. The
        same integer on the CPU gives identical predictions.
    verbose : bool, default=False
        Show a progress bar over epochs.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained network, in eval mode, on ``device_``.
    classes_ : ndarray of shape (n_classes,)
        Class labels; column ``k`` of ``predict_proba`` is ``classes_[k]``.
    history_ : list of dict
        Per epoch: mean training loss, training (adversarial) accuracy and
        seconds.
    n_features_in_ : int
        Number of features of a flattened sample.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names, when ``X`` was a DataFrame with string column names.
    sample_shape_ : tuple of int
        Shape of one sample in ``fit``, e.g. ``(1, 8, 8)`` for images or
        ``(n_features_in_,)`` for flat features. Inputs to ``predict`` may be
        given in this shape or flattened to ``n_features_in_`` columns.
    device_ : torch.device
        The device the model was trained on.

    See Also
    --------
    advprune.metrics.robust_accuracy : Accuracy under PGD attacks.
    advprune.make_pipeline : Put an ``AdversarialPruner`` in front.

    Examples
    --------
    >>> import numpy as np
    >>> from advprune import AdversarialClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(size=(200, 2)).astype("float32")
    >>> y = np.where(X[:, 0] > 0.5, "right", "left")
    >>> clf = AdversarialClassifier(eps=0.05, epochs=5, device="cpu",
    ...                             random_state=0).fit(X, y)
    >>> clf.classes_
    array(['left', 'right'], dtype='<U5')
    >>> clf.predict(np.array([[0.1, 0.5], [0.9, 0.5]]))
    array(['left', 'right'], dtype='<U5')
    >>> clf.predict_proba(X[:3]).shape
    (3, 2)
    """

    _parameter_constraints = {
        "model": [torch.nn.Module, str, None],
        **TRAINING_CONSTRAINTS,
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model=None,
        *,
        method="pgd",
        eps=8 / 255,
        norm="linf",
        attack_steps=10,
        step_size=None,
        beta=6.0,
        epochs=10,
        batch_size=128,
        optimizer="sgd",
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        schedule="cosine",
        bounds=(0.0, 1.0),
        augment=None,
        device="auto",
        amp=False,
        random_state=None,
        verbose=False,
    ):
        self.model = model
        self.method = method
        self.eps = eps
        self.norm = norm
        self.attack_steps = attack_steps
        self.step_size = step_size
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.bounds = bounds
        self.augment = augment
        self.device = device
        self.amp = amp
        self.random_state = random_state
        self.verbose = verbose

    def _validate_X(self, X, y=None, *, reset):
        """Validate ``X``, and ``y`` when ``reset`` (fitting), as scikit-learn
        does, for inputs of any sample shape.

        scikit-learn's validation counts features in the second axis, so image
        batches are validated flattened and given back in their sample shape.
        Returns float32 or float64 arrays, never a modified caller array.
        """
        # Other array-likes (lists, a datasets.ImageArray over uint8 images)
        # are converted whole: the classifier trains in memory. Sparse input
        # and data frames go to scikit-learn's validation as they are.
        if not (isinstance(X, np.ndarray) or issparse(X) or hasattr(X, "columns")):
            X = np.asarray(X)
        sample_shape = tuple(X.shape[1:])
        if reset:
            check_channels_first(X)
        if len(sample_shape) > 1:
            if not reset and sample_shape != self.sample_shape_:
                raise ValueError(
                    f"X has samples of shape {sample_shape}, but "
                    f"{type(self).__name__} was fitted on samples of shape "
                    f"{self.sample_shape_}; pass that shape or "
                    f"{self.n_features_in_} flat features."
                )
            X = X.reshape(X.shape[0], int(np.prod(sample_shape)))
        params = {
            "allow_nd": False,
            "dtype": (np.float32, np.float64),
            "ensure_all_finite": True,
            "reset": reset,
        }
        if reset:
            X, y = validate_data(self, X, y, **params)
        else:
            X = validate_data(self, X, **params)
        if not reset:
            sample_shape = self.sample_shape_
        elif len(sample_shape) <= 1:
            sample_shape = (X.shape[1],)
        X = X.reshape((X.shape[0], *sample_shape))
        return (X, y) if reset else X

    def fit(self, X, y):
        """Train a fresh copy of ``model`` adversarially on ``(X, y)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, \
\\*sample_shape)
            Training inputs, e.g. images of shape (n, channels, height, width)
            in [0, 1]. Never modified; a read-only memmap works.
        y : array-like of shape (n_samples,)
            Class labels, at least two distinct ones.

        Returns
        -------
        self : AdversarialClassifier
            The fitted classifier.
        """
        self._validate_params()
        bounds = check_bounds(self.bounds)
        device = resolve_device(self.device)
        X, y = self._validate_X(X, y, reset=True)
        scan_rows(X, bounds=bounds, chunk_size=len(X))
        y_encoded, self.classes_ = encode_labels(y, len(X))

        rng = check_random_state(self.random_state)
        init_seed, train_seed = (int(s) for s in rng.randint(2**31 - 1, size=2))
        module = build_model(
            self.model, X.shape[1:], len(self.classes_), random_state=init_seed
        )
        check_model_output(module, X[:2], len(self.classes_))
        trainer = AdversarialTrainer(
            module,
            **{**training_params(self), "device": device, "bounds": bounds},
            random_state=train_seed,
            verbose=self.verbose,
        )
        trainer.fit(X, y_encoded, record=None)
        self.module_ = trainer.model.eval()
        self.history_ = trainer.history_
        self.sample_shape_ = tuple(X.shape[1:])
        self.device_ = device
        return self

    def _logits(self, X):
        """Logits of validated inputs, in eval mode, as float64."""
        self.module_.eval()
        logits = batched_forward(
            self.module_, X, batch_size=4 * self.batch_size, device=self.device_
        )
        return logits.astype(np.float64)

    def predict_proba(self, X):
        """Class probabilities: the softmax of the model's logits (eval mode).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, \
\\*sample_shape)
            Inputs in the sample shape of ``fit`` or flattened.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Column ``k`` is the probability of ``classes_[k]``; rows sum to 1.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return softmax(self._logits(X), axis=1)

    def predict(self, X):
        """Predicted class labels (the most probable class).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, \
\\*sample_shape)
            Inputs in the sample shape of ``fit`` or flattened.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self.classes_[self._logits(X).argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags
