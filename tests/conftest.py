import matplotlib
import torch

# The suite's models are tiny: one intra-op thread is faster than two for them,
# and keeps timings steady when the machine is busy with other work.
torch.set_num_threads(1)
matplotlib.use("Agg")
