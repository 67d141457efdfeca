#!/usr/bin/env python3
"""Converts the Planetoid public-split files of a citation graph (Cora,
CiteSeer, PubMed; Yang, Cohen and Salakhutdinov 2016) into one npz archive
in the gnn-benchmark layout (Shchur et al. 2018) plus the published split,
the layout plugins/graph reads (`[data] name = "graph_npz"`).

Usage: scripts/planetoid_to_npz.py IN_DIR NAME OUT.npz
       scripts/planetoid_to_npz.py --digest FILE.npz...

IN_DIR holds ind.NAME.{x,y,tx,ty,allx,ally,graph,test.index} as distributed
with the Planetoid code: Python-2 pickles (x, tx, allx scipy CSR feature
matrices; y, ty, ally one-hot label arrays; graph a dict node -> list of
neighbours) and test.index (one node index per line).

OUT.npz (np.savez_compressed) holds exactly these arrays:
  adj_data float32 (all 1), adj_indices int32, adj_indptr int32,
  adj_shape int64 [N, N]     the adjacency in CSR: symmetric (each undirected
                             edge in both directions), no self-loops, no
                             duplicate entries, columns sorted in each row;
  attr_data float32, attr_indices int32, attr_indptr int32,
  attr_shape int64 [N, F]    the raw (not normalised) features in CSR;
  labels int64 [N]           the class of each node, -1 where its one-hot
                             row is all zeros;
  idx_train, idx_val, idx_test int64
                             train = 0..len(y), validation =
                             len(y)..len(y)+500, test = sorted test.index.

Node order is the usual one (as in Kipf and Welling's GCN code): nodes
0..len(allx) are the rows of allx/ally, and row j of tx/ty is node
test.index[j]. Nodes in the test range that are in no file (CiteSeer's 15
isolated nodes) get a zero feature row and the label -1, so N =
max(len(allx), max(test.index) + 1). Self-loops in the graph dict (124
CiteSeer nodes list themselves) and repeated neighbours are dropped.

The same input gives the same bytes with the same numpy and zlib (numpy
writes fixed zip timestamps), but another version may compress differently;
--digest prints a SHA-256 over the arrays' names, dtypes, shapes and values,
which depends only on the contents (scripts/fetch-data.sh checks it).

Needs Python 3 with numpy and scipy (pip install numpy scipy): scipy to
unpickle the feature matrices, numpy only for --digest.
"""

import hashlib
import os
import pickle
import sys
import tempfile
import warnings

try:
    import numpy as np
except ImportError:
    sys.exit("planetoid_to_npz: numpy is missing (pip install numpy scipy)")

PARTS = ("x", "y", "tx", "ty", "allx", "ally", "graph")
VALIDATION_SIZE = 500


def fail(message):
    sys.exit(f"planetoid_to_npz: {message}")


def need_scipy():
    """Imports scipy.sparse, or exits naming what to install."""
    try:
        import scipy.sparse  # noqa: F401  (the pickles refer to it)
    except ImportError:
        fail("scipy is missing, needed to read the pickled feature matrices "
             "(pip install numpy scipy)")
    return scipy.sparse


def load_parts(in_dir, name):
    """The seven pickled parts and test.index of data set `name`."""
    parts = {}
    for part in PARTS:
        path = os.path.join(in_dir, f"ind.{name}.{part}")
        try:
            with open(path, "rb") as f, warnings.catch_warnings():
                # the pickles name scipy.sparse.csr.csr_matrix, a deprecated
                # module path; latin1 keeps numpy's Python-2 byte strings
                warnings.simplefilter("ignore", DeprecationWarning)
                parts[part] = pickle.load(f, encoding="latin1")
        except OSError as e:
            fail(f"cannot read {path}: {e.strerror}")
    path = os.path.join(in_dir, f"ind.{name}.test.index")
    try:
        with open(path) as f:
            test_index = [int(line) for line in f if line.strip()]
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror}")
    except ValueError:
        fail(f"{path}: a line is not an integer")
    return parts, np.asarray(test_index, dtype=np.int64)


def one_hot_to_labels(rows, what):
    """Class index of each one-hot row; -1 for an all-zero row."""
    rows = np.asarray(rows)
    if rows.ndim != 2:
        fail(f"{what} is not a 2-D one-hot array")
    if np.any((rows != 0) & (rows != 1)) or np.any(rows.sum(axis=1) > 1):
        fail(f"{what} has a row that is not one-hot")
    labels = rows.argmax(axis=1).astype(np.int64)
    labels[rows.sum(axis=1) == 0] = -1
    return labels


def build(parts, test_index):
    """The arrays of the npz archive, and a summary dict for printing."""
    sparse = need_scipy()
    allx = sparse.csr_matrix(parts["allx"], dtype=np.float32)
    tx = sparse.csr_matrix(parts["tx"], dtype=np.float32)
    n_known, n_features = allx.shape
    if tx.shape[1] != n_features:
        fail(f"allx has {n_features} columns but tx has {tx.shape[1]}")
    if len(test_index) != tx.shape[0] or len(parts["ty"]) != tx.shape[0]:
        fail(f"test.index has {len(test_index)} lines, tx {tx.shape[0]} rows, "
             f"ty {len(parts['ty'])} rows")
    if len(np.unique(test_index)) != len(test_index):
        fail("test.index repeats a node")
    if test_index.min() < n_known:
        fail(f"test.index names node {test_index.min()}, one of allx's {n_known} rows")
    n_labelled = len(parts["y"])
    if n_labelled + VALIDATION_SIZE > n_known:
        fail(f"{n_labelled} training + {VALIDATION_SIZE} validation nodes "
             f"exceed allx's {n_known} rows")
    n = int(max(n_known, test_index.max() + 1))

    # Features: allx's rows, then tx's row j at node test_index[j]; nodes in
    # neither stay zero. A permutation of rows of vstack(allx, tx), padded.
    order = np.concatenate([np.arange(n_known), test_index])
    stacked = sparse.vstack([allx, tx]).tocsr()
    place = sparse.csr_matrix(
        (np.ones(len(order), dtype=np.float32), (order, np.arange(len(order)))),
        shape=(n, len(order)))
    features = (place @ stacked).tocsr()
    features.eliminate_zeros()
    features.sort_indices()

    labels = np.full(n, -1, dtype=np.int64)
    labels[:n_known] = one_hot_to_labels(parts["ally"], "ally")
    labels[test_index] = one_hot_to_labels(parts["ty"], "ty")
    train_labels = one_hot_to_labels(parts["y"], "y")
    if not np.array_equal(train_labels, labels[:n_labelled]):
        fail("y disagrees with the first rows of ally")
    missing = np.setdiff1d(np.arange(n_known, n), test_index)

    # Adjacency: every listed pair in both directions, minus self-loops and
    # repeats.
    graph = parts["graph"]
    rows, cols = [], []
    for node, neighbours in graph.items():
        for other in neighbours:
            rows.append(int(node))
            cols.append(int(other))
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if len(rows) and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) >= n):
        fail(f"the graph names a node outside 0..{n}")
    self_loops = np.unique(rows[rows == cols])
    keep = rows != cols
    rows, cols = rows[keep], cols[keep]
    pairs = np.unique(np.stack([np.concatenate([rows, cols]),
                                np.concatenate([cols, rows])], axis=1), axis=0)
    adjacency = sparse.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    adjacency.sort_indices()
    assert adjacency.nnz == len(pairs) and adjacency.data.max(initial=1) == 1
    assert (adjacency != adjacency.T).nnz == 0 and adjacency.diagonal().sum() == 0

    arrays = {
        "adj_data": adjacency.data.astype(np.float32),
        "adj_indices": adjacency.indices.astype(np.int32),
        "adj_indptr": adjacency.indptr.astype(np.int32),
        "adj_shape": np.asarray([n, n], dtype=np.int64),
        "attr_data": features.data.astype(np.float32),
        "attr_indices": features.indices.astype(np.int32),
        "attr_indptr": features.indptr.astype(np.int32),
        "attr_shape": np.asarray([n, n_features], dtype=np.int64),
        "labels": labels,
        "idx_train": np.arange(n_labelled, dtype=np.int64),
        "idx_val": np.arange(n_labelled, n_labelled + VALIDATION_SIZE, dtype=np.int64),
        "idx_test": np.sort(test_index),
    }
    degree = np.diff(adjacency.indptr)
    summary = {
        "nodes": n,
        "undirected edges": adjacency.nnz // 2,
        "stored entries (both directions)": adjacency.nnz,
        "self-loops dropped (nodes)": len(self_loops),
        "graph dict entries (listed neighbours)": len(keep),
        "isolated nodes": int((degree == 0).sum()),
        "features": n_features,
        "feature nonzeros": features.nnz,
        "nodes without features or label (zero rows, label -1)": len(missing),
        "classes": int(labels.max()) + 1,
        "split train/val/test": f"{n_labelled}/{VALIDATION_SIZE}/{len(test_index)}",
    }
    return arrays, summary


def digest(path):
    """SHA-256 over the arrays of an npz: names, dtypes, shapes, values."""
    h = hashlib.sha256()
    with np.load(path, allow_pickle=False) as z:
        for key in sorted(z.files):
            a = np.ascontiguousarray(z[key])
            h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def write_npz(path, arrays):
    """np.savez_compressed to a temporary file beside `path`, then renamed:
    an interrupted run leaves no half-written archive."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, partial = tempfile.mkstemp(dir=folder, prefix=".planetoid_to_npz.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise


def main(argv):
    if len(argv) >= 2 and argv[0] == "--digest":
        for path in argv[1:]:
            print(f"{digest(path)}  {path}")
        return 0
    if len(argv) != 3 or argv[0].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    in_dir, name, out = argv
    need_scipy()  # before unpickling: the pickles name scipy's classes
    parts, test_index = load_parts(in_dir, name)
    arrays, summary = build(parts, test_index)
    write_npz(out, arrays)
    print(f"planetoid_to_npz: {name} from {in_dir}")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    print(f"  wrote {out}: {os.path.getsize(out)} bytes, content digest {digest(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
