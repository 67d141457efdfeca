#!/usr/bin/env python3
"""NumPy replica of the DGI code's probe on a finished DGI run: the check
behind plugins/graph/README.md's note that starting the probe from zero
(ours) or from Glorot-random weights averaged over 50 runs (the DGI code)
gives the same accuracy.

It recomputes the 1-layer GCN + PReLU embeddings from the run's checkpoint
(the best step DGI restores, `method/dgi.best.encoder.layers.0.*`, else the
last step's `model/encoder.layers.0.*`) on the graph of a `.public.npz`
(undirected, self-loops dropped then one added per node, symmetric
normalisation, row-normalised features: what parallax-graph does), then
trains a logistic regression on the raw embeddings of the public split's
training nodes (full-batch Adam, lr 0.01, no weight decay, 100 epochs) and
prints the test accuracy for
  - zero: one run from zero weights (what `node_probe` does with the DGI
    recipes' settings);
  - glorot: the mean +- std of 50 runs from Glorot-uniform weights and a
    zero bias (the DGI code's LogReg).

Usage (numpy, scipy):
  python3 scripts/graph_dgi_probe.py RUN/checkpoint.safetensors data/graph/citeseer.public.npz
"""

import json
import struct
import sys

import numpy as np
import scipy.sparse as sp


def load_ckpt(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header, base = json.loads(b[8:8 + n]), 8 + n
    out = {}
    for k, v in header.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[base + s:base + e], dtype=np.float32).reshape(v["shape"])
    return out


def graph(path):
    z = np.load(path)
    a = sp.csr_matrix((z["adj_data"], z["adj_indices"], z["adj_indptr"]), shape=tuple(z["adj_shape"]))
    a = ((a + a.T) > 0).astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    a = a + sp.eye(a.shape[0])
    d = np.asarray(a.sum(1)).ravel() ** -0.5
    if "attr_data" in z:
        x = sp.csr_matrix((z["attr_data"], z["attr_indices"], z["attr_indptr"]), shape=tuple(z["attr_shape"]))
    else:
        x = sp.csr_matrix(z["attr_matrix"])
    r = np.asarray(x.sum(1)).ravel()
    r[r == 0] = 1
    return sp.diags(d) @ a @ sp.diags(d), sp.diags(1 / r) @ x, z


def probe(h, y, train, test, w, steps=100, lr=0.01):
    """Full-batch Adam on the softmax cross entropy from weights w (bias 0)."""
    classes = w.shape[1]
    b = np.zeros(classes)
    m, v = [np.zeros_like(w), np.zeros_like(b)], [np.zeros_like(w), np.zeros_like(b)]
    xt, onehot = h[train], np.eye(classes)[y[train]]
    for t in range(1, steps + 1):
        logits = xt @ w + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        g = (p / p.sum(1, keepdims=True) - onehot) / len(train)
        for i, (param, grad) in enumerate(zip([w, b], [xt.T @ g, g.sum(0)])):
            m[i] = 0.9 * m[i] + 0.1 * grad
            v[i] = 0.999 * v[i] + 0.001 * grad * grad
            param -= lr * (m[i] / (1 - 0.9 ** t)) / (np.sqrt(v[i] / (1 - 0.999 ** t)) + 1e-8)
    return ((h[test] @ w + b).argmax(1) == y[test]).mean()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("Usage")[1])
    ck = load_ckpt(sys.argv[1])
    adj, x, z = graph(sys.argv[2])
    pre = "method/dgi.best.encoder.layers.0."
    if pre + "weight" not in ck:
        pre = "model/encoder.layers.0."
    h = np.asarray(adj @ (x @ ck[pre + "weight"])) + ck[pre + "bias"]
    h = np.where(h > 0, h, ck[pre + "prelu"][0] * h)
    y, train, test = z["labels"], z["idx_train"], z["idx_test"]
    dim, classes = h.shape[1], int(y.max()) + 1
    zero = probe(h, y, train, test, np.zeros((dim, classes)))
    rng = np.random.RandomState(0)
    bound = np.sqrt(6 / (dim + classes))
    runs = [probe(h, y, train, test, rng.uniform(-bound, bound, (dim, classes))) for _ in range(50)]
    print(f"zero {100 * zero:.2f}  glorot {100 * np.mean(runs):.2f} +- {100 * np.std(runs):.2f}")


if __name__ == "__main__":
    main()
