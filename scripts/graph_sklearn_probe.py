#!/usr/bin/env python3
"""scikit-learn probes of a finished GRACE (or DGI) run's embeddings: a check
that our `node_probe` is not what separates a table row from its paper.

It recomputes the GCN encoder's embeddings from the run's checkpoint
(`model/encoder.layers.I.{weight,bias,prelu}`) on the graph of an npz in the
gnn-benchmark layout (undirected, self-loops dropped then one added per
node, symmetric normalisation, row-normalised features: what parallax-graph
does), L2-normalises them and prints the mean +- std over 10 random splits of
  - grace-protocol: the GRACE code's evaluation (one-vs-rest liblinear
    logistic regression, C in 2^-10..2^9 by 5-fold cross-validation on the
    10% training nodes, tested on the other 90%);
  - multinomial-val: multinomial logistic regression, C picked on a 10%
    validation set, tested on the remaining 80%.

Usage (numpy, scipy, scikit-learn):
  python3 scripts/graph_sklearn_probe.py RUN/checkpoint.safetensors \
      plugins/graph/data/cora.npz relu      # prelu for a PReLU encoder
"""

import json
import struct
import sys
import numpy as np, scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import normalize

def load_ckpt(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); o = 8+n
    out = {}
    for k, v in h.items():
        if k == '__metadata__' or v['dtype'] != 'F32': continue
        s, e = v['data_offsets']
        out[k] = np.frombuffer(b[o+s:o+e], dtype=np.float32).reshape(v['shape'])
    return out

def graph(path):
    z = np.load(path)
    A = sp.csr_matrix((z['adj_data'], z['adj_indices'], z['adj_indptr']), shape=tuple(z['adj_shape']))
    A = ((A + A.T) > 0).astype(np.float64); A.setdiag(0); A.eliminate_zeros()
    A = A + sp.eye(A.shape[0]); d = np.asarray(A.sum(1)).ravel() ** -0.5
    Ah = sp.diags(d) @ A @ sp.diags(d)
    if 'attr_data' in z:
        X = sp.csr_matrix((z['attr_data'], z['attr_indices'], z['attr_indptr']), shape=tuple(z['attr_shape']))
    else:
        X = sp.csr_matrix(z['attr_matrix'])
    r = np.asarray(X.sum(1)).ravel(); r[r == 0] = 1
    X = sp.diags(1 / r) @ X
    return Ah, X, z['labels']

def embed(ck, Ah, X, act):
    H = X; i = 0
    while f'model/encoder.layers.{i}.weight' in ck:
        W = ck[f'model/encoder.layers.{i}.weight']; b = ck[f'model/encoder.layers.{i}.bias']
        H = Ah @ (H @ W) + b
        if act == 'relu': H = np.maximum(H, 0)
        else:
            a = ck[f'model/encoder.layers.{i}.prelu'][0]; H = np.where(H > 0, H, a * H)
        i += 1
    return np.asarray(H)

ck = load_ckpt(sys.argv[1]); Ah, X, y = graph(sys.argv[2]); act = sys.argv[3]
Z = normalize(embed(ck, Ah, X, act))
lab = np.where(y >= 0)[0]
g, m = [], []
for s in range(10):
    rng = np.random.RandomState(s); p = rng.permutation(lab)
    ntr = int(round(0.1 * len(p))); tr, te = p[:ntr], p[ntr:]
    # GRACE's official protocol: OvR liblinear, C by 5-fold CV on the training 10%
    clf = GridSearchCV(OneVsRestClassifier(LogisticRegression(solver='liblinear')),
                       {'estimator__C': 2.0 ** np.arange(-10, 10)}, n_jobs=1, cv=5)
    clf.fit(Z[tr], y[tr]); g.append((clf.predict(Z[te]) == y[te]).mean())
    # multinomial, C on a 10% validation set, test on 80%
    va, te2 = p[ntr:2*ntr], p[2*ntr:]
    best = max(((LogisticRegression(C=C, max_iter=3000).fit(Z[tr], y[tr]), C) for C in 2.0 ** np.arange(-4, 10)),
               key=lambda t: (t[0].predict(Z[va]) == y[va]).mean())[0]
    m.append((best.predict(Z[te2]) == y[te2]).mean())
print(f"grace-protocol {100*np.mean(g):.2f} +- {100*np.std(g):.2f}  multinomial-val {100*np.mean(m):.2f} +- {100*np.std(m):.2f}")
