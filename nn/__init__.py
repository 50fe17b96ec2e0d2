"""Autograd-free layers with explicit forward and backward (NumPy, or CuPy via nn.backend)."""
from .activations import Identity, ReLU, Tanh, make_activation
from .conv import Conv2D, hwnc_to_nchw, nchw_to_hwnc
from .dropout import Dropout
from .linear import Linear
from .params import Params
from .pool import MaxPool2D

__all__ = ["Conv2D", "MaxPool2D", "Linear", "ReLU", "Tanh", "Identity", "Dropout", "Params",
           "make_activation", "nchw_to_hwnc", "hwnc_to_nchw"]
