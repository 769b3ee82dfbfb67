"""The image stream's output folder: the shared files and its own."""
from core.run_files import RunFile, StreamFiles


class ImageFiles(StreamFiles):
    maps = RunFile("maps.npz")  # one anomaly map per test image
    overlays = RunFile("overlays")  # a folder: the maps drawn over their images
    normal_stats = RunFile("normal_stats.npz")  # per-pixel error statistics of normal images
    knn_bank = RunFile("knn_bank.pt")  # score.method knn: the normal patch features
    head = RunFile("head")  # a folder: the defect head's checkpoints and training.json
