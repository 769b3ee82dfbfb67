"""Images: loading image datasets and the Swin MAE model for self-supervised anomaly detection."""
