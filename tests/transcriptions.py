"""NumPy transcriptions of textbook algorithms that more than one audit test file replays optbench
against (independent of optbench's code: written from Nocedal & Wright, 2nd ed.)."""
import numpy as np


def truncated_cg_textbook(h, g, tol, kmax):
    """N&W Alg. 7.1's inner loop: (p, products, negative curvature met)."""
    z, r = np.zeros_like(g), g.copy()
    d = -r
    if np.linalg.norm(r) <= tol:
        return z, 0, False
    for j in range(kmax):
        hd = h @ d
        curv = d @ hd
        if curv <= 0:
            return (-g if j == 0 else z), j + 1, True
        alpha = (r @ r) / curv
        z = z + alpha * d
        r_new = r + alpha * hd
        if np.linalg.norm(r_new) <= tol:
            return z, j + 1, False
        d = -r_new + (r_new @ r_new) / (r @ r) * d
        r = r_new
    return z, kmax, False
