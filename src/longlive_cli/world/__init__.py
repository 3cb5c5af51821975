"""ShapesWorld: procedural videos with known ground truth, their prompt grammar, a pixel detector and metrics."""
