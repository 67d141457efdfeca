#!/usr/bin/env python3
"""Reference timing of GRACE (Zhu et al. 2020) on Cora in PyTorch Geometric.

The counterpart of Parallax's `[method] name = "grace"` (plugins/graph) for
speed: a plain PyG implementation with the paper's Cora settings:
  - encoder: 2-layer GCN, GCNConv 1433 -> 256 -> 128, ReLU after each layer;
  - projection head: Linear(128, 128) - ELU - Linear(128, 128);
  - two views, each built from the whole graph: directed edges dropped
    independently (p 0.2 for the first view, 0.4 for the second; PyG's
    dropout_edge, not forced undirected) and feature columns masked (p 0.3
    and 0.4; the same columns are zeroed for every node);
  - loss: with u, v the L2-normalised projections of the two views (N x 128)
    and s the dot product,
        l(u_i) = -log( exp(s(u_i,v_i)/tau) /
                       (sum_k exp(s(u_i,v_k)/tau) + sum_{k!=i} exp(s(u_i,u_k)/tau)) ),
    averaged over both directions (l(u_i) and l(v_i)) and all nodes, tau 0.4;
  - Adam, lr 5e-4, weight decay 1e-5; full-graph steps (one per epoch);
  - features row-normalised (PyG's NormalizeFeatures).
Cora is read from plugins/graph/data/cora.public.npz (the Planetoid Cora as
written by scripts/planetoid_to_npz.py); the edge_index is built from its
CSR adjacency (10,556 directed entries, both directions of 5,278 edges).
Nothing is downloaded.

It prints one JSON line:
    {"impl":"pyg","epochs":N,"seconds_per_epoch":..,"peak_rss_mb":..,
     "torch":..,"torch_geometric":..,"threads":T}
seconds_per_epoch is the wall time of the --epochs timed epochs (forward of
both views, loss, backward, Adam step) after --warmup untimed ones, divided
by --epochs; peak_rss_mb is the process's peak resident memory. With --eval
training goes on to 200 epochs in all, then the embeddings of the
unaugmented graph (the encoder's output, L2-normalised) are classified by
scikit-learn's LogisticRegression on 10 random 10% / 90% train / test
splits, and "accuracy" (mean) and "accuracy_std" join the line
(--probe grace: the GRACE code's probe instead, see evaluate).

Setup (a venv outside the repository: .gitignore has no entry for one in
scripts/, and torch is gigabytes):
    python3 -m venv /tmp/gvenv
    /tmp/gvenv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
        (or plain `pip install torch` where that index is unreachable: the
        PyPI wheel is the CUDA build, about 3 GB with its nvidia packages,
        and runs on the CPU as well)
    /tmp/gvenv/bin/pip install torch-geometric    (pure Python; no
        torch-scatter or torch-sparse needed)
    /tmp/gvenv/bin/pip install scikit-learn       (only for --eval)

Usage: /tmp/gvenv/bin/python scripts/bench_grace_ref.py [--epochs 50]
       [--warmup 5] [--threads 2] [--eval] [--probe multinomial|grace]
       [--seed 0] [--data PATH]
"""

import argparse
import json
import os
import resource
import sys
import time

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import torch_geometric
    from torch_geometric.data import Data
    from torch_geometric.nn import GCNConv
    from torch_geometric.transforms import NormalizeFeatures
    from torch_geometric.utils import dropout_edge
except ImportError as e:
    sys.exit(f"bench_grace_ref: {e.name} is missing (see the setup in this script's header: "
             "pip install torch torch-geometric)")

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "..", "plugins", "graph", "data", "cora.public.npz")

# The paper's Cora settings.
HIDDEN, OUT, PROJ = 256, 128, 128
EDGE_DROP = (0.2, 0.4)
FEATURE_MASK = (0.3, 0.4)
TAU = 0.4
LR, WEIGHT_DECAY = 5e-4, 1e-5
EVAL_EPOCHS = 200


def load_cora(path):
    """A PyG Data object (x row-normalised, edge_index, y) from the npz."""
    with np.load(path, allow_pickle=False) as z:
        n = int(z["adj_shape"][0])
        indptr, indices = z["adj_indptr"].astype(np.int64), z["adj_indices"].astype(np.int64)
        rows = np.repeat(np.arange(n), np.diff(indptr))
        edge_index = torch.from_numpy(np.stack([rows, indices]))
        n_feat = int(z["attr_shape"][1])
        x = np.zeros((n, n_feat), dtype=np.float32)
        a_ptr, a_idx = z["attr_indptr"], z["attr_indices"]
        x[np.repeat(np.arange(n), np.diff(a_ptr)), a_idx] = z["attr_data"]
        y = torch.from_numpy(z["labels"].astype(np.int64))
    data = Data(x=torch.from_numpy(x), edge_index=edge_index, y=y)
    return NormalizeFeatures()(data)


class Grace(torch.nn.Module):
    """GCN encoder and projection head."""

    def __init__(self, n_features):
        super().__init__()
        self.conv1 = GCNConv(n_features, HIDDEN)
        self.conv2 = GCNConv(HIDDEN, OUT)
        self.proj1 = torch.nn.Linear(OUT, PROJ)
        self.proj2 = torch.nn.Linear(PROJ, PROJ)

    def encode(self, x, edge_index):
        h = F.relu(self.conv1(x, edge_index))
        return F.relu(self.conv2(h, edge_index))

    def project(self, h):
        return self.proj2(F.elu(self.proj1(h)))


def view(x, edge_index, p_edge, p_feature):
    """Drops each directed edge with p_edge and zeroes each feature column
    (for all nodes) with p_feature."""
    kept, _ = dropout_edge(edge_index, p=p_edge, force_undirected=False)
    keep_column = (torch.rand(x.size(1)) >= p_feature).to(x.dtype)
    return x * keep_column, kept


def one_direction(u, v):
    """l(u_i) for every i: u_i's positive is v_i; its negatives are every
    v_k (k != i) and every u_k (k != i)."""
    between = torch.exp(u @ v.t() / TAU)
    within = torch.exp(u @ u.t() / TAU)
    positive = between.diagonal()
    denominator = between.sum(dim=1) + within.sum(dim=1) - within.diagonal()
    return -torch.log(positive / denominator)


def grace_loss(z1, z2):
    u, v = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    return 0.5 * (one_direction(u, v) + one_direction(v, u)).mean()


def train_epoch(model, optimizer, data):
    model.train()
    optimizer.zero_grad()
    x1, e1 = view(data.x, data.edge_index, EDGE_DROP[0], FEATURE_MASK[0])
    x2, e2 = view(data.x, data.edge_index, EDGE_DROP[1], FEATURE_MASK[1])
    z1 = model.project(model.encode(x1, e1))
    z2 = model.project(model.encode(x2, e2))
    loss = grace_loss(z1, z2)
    loss.backward()
    optimizer.step()
    return loss.item()


def evaluate(model, data, seed, probe):
    """Mean and std of logistic-regression accuracy over 10 random
    10% / 90% splits of the L2-normalised embeddings. probe "multinomial":
    scikit-learn's LogisticRegression at C = 1 on splits drawn from `seed`;
    probe "grace": the GRACE code's protocol (one-vs-rest liblinear, C in
    2^-10..2^9 by 5-fold cross-validation on the training 10%), split s
    drawn by RandomState(s), as scripts/graph_sklearn_probe.py does."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV
        from sklearn.multiclass import OneVsRestClassifier
    except ImportError:
        sys.exit("bench_grace_ref: --eval needs scikit-learn (pip install scikit-learn)")
    model.eval()
    with torch.no_grad():
        h = F.normalize(model.encode(data.x, data.edge_index), dim=1).numpy()
    y = data.y.numpy()
    rng = np.random.default_rng(seed)
    accuracies = []
    for s in range(10):
        if probe == "grace":
            order = np.random.RandomState(s).permutation(len(y))
        else:
            order = rng.permutation(len(y))
        cut = int(round(0.1 * len(y)))
        train, test = order[:cut], order[cut:]
        if probe == "grace":
            clf = GridSearchCV(OneVsRestClassifier(LogisticRegression(solver="liblinear")),
                               {"estimator__C": 2.0 ** np.arange(-10, 10)}, n_jobs=1, cv=5)
        else:
            clf = LogisticRegression(max_iter=2000)
        clf.fit(h[train], y[train])
        accuracies.append(float((clf.predict(h[test]) == y[test]).mean()))
    return float(np.mean(accuracies)), float(np.std(accuracies))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=50, help="timed epochs")
    parser.add_argument("--warmup", type=int, default=5, help="untimed epochs first")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--eval", action="store_true",
                        help=f"train {EVAL_EPOCHS} epochs in all, then a linear evaluation")
    parser.add_argument("--probe", choices=["multinomial", "grace"], default="multinomial",
                        help="the --eval probe (see evaluate)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=DEFAULT_DATA, help="the Cora npz")
    args = parser.parse_args()
    if args.epochs < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--epochs and --threads must be positive, --warmup not negative")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load_cora(args.data)
    model = Grace(data.num_features)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    for _ in range(args.warmup):
        train_epoch(model, optimizer, data)
    start = time.perf_counter()
    for _ in range(args.epochs):
        loss = train_epoch(model, optimizer, data)
    seconds = (time.perf_counter() - start) / args.epochs

    result = {
        "impl": "pyg",
        "epochs": args.epochs,
        "seconds_per_epoch": round(seconds, 5),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "threads": args.threads,
        "loss": round(loss, 4),
    }
    if args.eval:
        for _ in range(args.warmup + args.epochs, EVAL_EPOCHS):
            loss = train_epoch(model, optimizer, data)
        mean, std = evaluate(model, data, args.seed, args.probe)
        result.update(eval_epochs=max(EVAL_EPOCHS, args.warmup + args.epochs),
                      loss=round(loss, 4), accuracy=round(mean, 4), accuracy_std=round(std, 4))
        # the line's peak memory then includes the evaluation
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
