"""The time-series stream's output folder: the shared files and its own."""
from core.run_files import RunFile, StreamFiles


class SeriesFiles(StreamFiles):
    channels = RunFile("channel_scores.npz")  # per-step, per-channel errors (and their scale)
    pca = RunFile("pca.npz")  # the fitted PCA baseline, reused by scoring runs and exports
