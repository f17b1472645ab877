"""The Evaluate page: metrics, the confusion matrix gallery, predictions and comparisons."""
