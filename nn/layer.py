"""The layer protocol shared by every `nn` layer.

A layer holds hyper-parameters and the *names* of its parameters; the arrays live in a
`nn.params.Params` container passed to each call. This keeps layers stateless and reentrant (a
network may run twice on different inputs with the same parameters, each with its own cache), and
makes a line search over candidate parameter vectors trivial.

    y, cache = layer.forward(params, x)            # cache: the minimal state backward needs
    gx, grads = layer.backward(params, cache, gy)  # grads: {param name: gradient}; gy untouched
"""


class Layer:
    name = ""

    def param_shapes(self):
        """{parameter name: shape}; empty for parameter-free layers."""
        return {}

    def init_params(self, rng, dtype):
        """{parameter name: initial array} (see nn.init for the schemes)."""
        return {}

    def forward(self, params, x):
        raise NotImplementedError

    def backward(self, params, cache, gy):
        raise NotImplementedError

    def _check_input(self, x, ndim, what):
        if x.ndim != ndim:
            raise ValueError(f"{type(self).__name__} '{self.name}': expected {what} "
                             f"({ndim}-D), got shape {tuple(x.shape)}")
