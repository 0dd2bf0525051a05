"""How an epoch is cut into batches."""

__all__ = []


def batch_slices(n_samples, batch_size):
    """The slices of an epoch's ``n_samples`` rows into consecutive batches of
    ``batch_size``; a last batch of a single row joins the one before, since
    batch normalisation cannot train on one sample.

    >>> batch_slices(5, 2)
    [slice(0, 2, None), slice(2, 5, None)]
    >>> len(batch_slices(6, 2))
    3
    """
    starts = list(range(0, n_samples, batch_size))
    if len(starts) > 1 and n_samples - starts[-1] == 1:
        starts.pop()
    return [
        slice(start, stop)
        for start, stop in zip(starts, [*starts[1:], n_samples], strict=True)
    ]
