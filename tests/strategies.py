"""Hypothesis strategies for input shapes shared by the test modules."""
from hypothesis import strategies as st


@st.composite
def nc_star(draw, min_spatial=0, max_spatial=2, min_n=1, max_c=6):
    """Shapes (N, C, *spatial) with 0..2 spatial dims of size 1..5."""
    n = draw(st.integers(min_n, 5))
    c = draw(st.integers(1, max_c))
    k = draw(st.integers(min_spatial, max_spatial))
    spatial = tuple(draw(st.integers(1, 5)) for _ in range(k))
    return (n, c) + spatial


def values_per_channel(shape):
    n = shape[0]
    for s in shape[2:]:
        n *= s
    return n
