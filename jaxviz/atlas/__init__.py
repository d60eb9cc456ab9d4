"""The atlas: every conv layer's filter images, the class images and dataset examples, as a
static HTML site (`jaxviz atlas`)."""
