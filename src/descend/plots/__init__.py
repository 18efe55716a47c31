"""Pictures of the landscape lab (matplotlib, Agg backend; PNG and SVG, GIF/MP4 animations).

==========================  ==========================================================
``contour``                 2-D contours with every run's path (one colour per spec)
``curve_1d``                a 1-D function with the iterates on it
``surface``                 3-D surface with the paths drawn on it
``loss_curves``             f − f* against step, log scale
``animate``                 GIF (frame cap) and MP4 when ffmpeg is present
``basin_map``               starts coloured by the minimum they reach, one panel per spec
``hyperparameter_map``      lr × momentum coloured by steps to converge, theory edge on top
``lr_sensitivity``          final loss against lr
==========================  ==========================================================
"""

from .animate import animate, ffmpeg_available
from .maps import basin_map, hyperparameter_map, lr_sensitivity
from .paths import contour, curve_1d, loss_curves, surface

__all__ = [
    "animate",
    "basin_map",
    "contour",
    "curve_1d",
    "ffmpeg_available",
    "hyperparameter_map",
    "loss_curves",
    "lr_sensitivity",
    "surface",
]
