"""Views beyond filter maximization: weights, feature maps, class outputs, attributions."""
