"""Using a trained model: the saved bundle, predictions on new clips, Grad-CAM, export."""
