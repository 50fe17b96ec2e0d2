"""A tiny StructNet configuration for float64 tests."""
from structlearn.network import NetConfig

TINY = NetConfig(input_size=20, convs=((3, 2), (3, 3), (2, 2)), hidden=6, embed=5, dropout=0.5, detect_grid=2)
