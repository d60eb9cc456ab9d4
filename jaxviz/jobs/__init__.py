"""The jobs behind the commands: config in, files under a workdir out, all through one frame
(`jaxviz.jobs.frame`): everything cheap is checked into a request before anything is written,
the model is loaded (LeNet's default trained first when missing), the work is done, and each
output folder is written hidden and renamed into place, so a failed run leaves nothing half
written.

    gallery.run_gallery   → WORKDIR/<layer>/        (resumable, sharded over devices and hosts)
    views.run_weights     → WORKDIR/weights/<layer>/
    views.run_feature_maps→ WORKDIR/feature-maps/
    views.run_classes     → WORKDIR/classes/
    views.run_gradcam     → WORKDIR/gradcam/
    views.run_attribution → WORKDIR/<method>/
"""
