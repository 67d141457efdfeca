#!/usr/bin/env python3
"""Checks whether two graph npz archives (gnn-benchmark layout) hold the same
graph up to node order, e.g. gnn-benchmark's cora.npz and the Planetoid Cora
converted by scripts/planetoid_to_npz.py.

Usage: scripts/compare_graph_npz.py A.npz B.npz

Both adjacencies are read as undirected (symmetrised, self-loops dropped).
Nodes are matched by their feature rows (the set of nonzero columns); a
node whose row several nodes share is then matched by its already-matched
neighbours and its degree, and nodes that stay interchangeable (same
features, same matched neighbours) are paired in order. It prints the node,
edge and feature-nonzero counts of both, how many nodes matched, whether the
labels agree up to a renaming of the classes, and the edges and nodes of
either side that the matching leaves over. A heuristic, not a general
isomorphism test: it answers for graphs whose feature rows are nearly
distinct, as in the citation graphs.

Needs Python 3 with numpy and scipy (pip install numpy scipy).
"""

import sys
from collections import defaultdict

try:
    import numpy as np
    import scipy.sparse as sp
except ImportError:
    sys.exit("compare_graph_npz: needs numpy and scipy (pip install numpy scipy)")


def load(path):
    """(undirected adjacency without self-loops, features, labels, self-loops)."""
    with np.load(path, allow_pickle=False) as z:
        a = sp.csr_matrix((z["adj_data"], z["adj_indices"], z["adj_indptr"]),
                          shape=tuple(z["adj_shape"]))
        x = sp.csr_matrix((z["attr_data"], z["attr_indices"], z["attr_indptr"]),
                          shape=tuple(z["attr_shape"]))
        labels = z["labels"].astype(np.int64)
    self_loops = int((a.diagonal() != 0).sum())
    u = ((a + a.T) != 0).astype(np.int8).tolil()
    u.setdiag(0)
    u = u.tocsr()
    u.eliminate_zeros()
    u.sort_indices()
    x.sort_indices()
    return u, x, labels, a.nnz, self_loops


def neighbours(adj, i):
    return adj.indices[adj.indptr[i]:adj.indptr[i + 1]]


def row_key(x, i):
    return x.indices[x.indptr[i]:x.indptr[i + 1]].tobytes()


def match(adj_a, x_a, adj_b, x_b):
    """A dict node of A -> node of B (see the header)."""
    by_row = defaultdict(list)
    for j in range(x_b.shape[0]):
        by_row[row_key(x_b, j)].append(j)
    candidates = {i: by_row.get(row_key(x_a, i), []) for i in range(x_a.shape[0])}
    mapping = {i: c[0] for i, c in candidates.items() if len(c) == 1}
    used = set(mapping.values())
    progress = True
    while progress:
        progress = False
        for i, options in candidates.items():
            if i in mapping:
                continue
            known = {mapping[k] for k in neighbours(adj_a, i) if k in mapping}
            fits = [j for j in options if j not in used
                    and len(neighbours(adj_b, j)) == len(neighbours(adj_a, i))
                    and known <= set(neighbours(adj_b, j))]
            if len(fits) == 1:
                mapping[i] = fits[0]
                used.add(fits[0])
                progress = True
    for i, options in candidates.items():  # interchangeable leftovers
        if i not in mapping:
            free = [j for j in options if j not in used]
            if free:
                mapping[i] = free[0]
                used.add(free[0])
    return mapping


def edges(adj, rename=None):
    coo = sp.triu(adj, k=1).tocoo()
    out = set()
    for r, c in zip(coo.row.tolist(), coo.col.tolist()):
        if rename is None:
            out.add((r, c))
        elif r in rename and c in rename:
            out.add(tuple(sorted((rename[r], rename[c]))))
    return out


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    graphs = [load(p) for p in argv]
    for path, (u, x, labels, stored, loops) in zip(argv, graphs):
        print(f"{path}: {u.shape[0]} nodes, {stored} stored adjacency entries "
              f"({loops} self-loops), {u.nnz // 2} undirected edges, "
              f"{x.shape[1]} features, {x.nnz} feature nonzeros, "
              f"{labels.max() + 1} classes, {int((labels < 0).sum())} unlabelled")
    (adj_a, x_a, lab_a, _, _), (adj_b, x_b, lab_b, _, _) = graphs
    if x_a.shape[1] != x_b.shape[1]:
        print("different feature counts: not the same graph")
        return 1
    mapping = match(adj_a, x_a, adj_b, x_b)
    classes = defaultdict(set)
    for i, j in mapping.items():
        classes[int(lab_a[i])].add(int(lab_b[j]))
    renaming = all(len(v) == 1 for v in classes.values()) and \
        len({next(iter(v)) for v in classes.values()}) == len(classes)
    e_a, e_b = edges(adj_a, mapping), edges(adj_b)
    left_a = x_a.shape[0] - len(mapping)
    left_b = sorted(set(range(x_b.shape[0])) - set(mapping.values()))
    print(f"matched {len(mapping)} nodes of A to B by features and neighbours; "
          f"{left_a} of A and {len(left_b)} of B left over")
    print("labels agree up to renaming the classes: " + ("yes " + str(
        {a: next(iter(b)) for a, b in sorted(classes.items())}) if renaming else "no"))
    print(f"edges: {len(e_a & e_b)} in both, {len(e_a - e_b)} only in A, "
          f"{len(e_b - e_a)} only in B")
    if left_b:
        print(f"B's left-over nodes: degrees {sorted(len(neighbours(adj_b, j)) for j in left_b)}, "
              f"feature nonzeros {sorted(x_b[j].nnz for j in left_b)}, "
              f"edges only in B touching them: "
              f"{sum(1 for a, b in e_b - e_a if a in left_b or b in left_b)}")
    same = left_a == 0 and not left_b and renaming and e_a == e_b
    print("the same graph up to node order: " + ("yes" if same else "no"))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
