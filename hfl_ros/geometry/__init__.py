"""Geometry for HFL-Net inference: cameras, boxes, crops, control points, PnP, alignment (numpy/cv2)."""
