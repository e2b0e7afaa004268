"""User clustering for cluster-and-prune inference.

Why: generating a title for every (user, ad) pair is unaffordable at scale, so users
are grouped by their embedding U and one title is written per (cluster, ad) from the
cluster's centroid (HLLM-Creator, section "inference at scale").

Assignment uses the chosen geometry (``cosine``: k-means on unit-normalised U;
``dot``: k-means on raw U); the centroid fed to the creative LLM is always the mean
raw U of the cluster's members, i.e. a point of the space the projector was trained
on. scikit-learn's KMeans / MiniBatchKMeans do the work; faiss is used only when
asked for and installed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from recbole_hllm.errors import UserError

BACKENDS = ("kmeans", "minibatch", "faiss")
METRICS = ("cosine", "dot")


class ClusteringError(UserError, ValueError):
    pass


@dataclass
class Clusters:
    assignment: np.ndarray  # [N] cluster of each user
    centroids: np.ndarray  # [K, H] mean raw U of each cluster's members

    @property
    def k(self) -> int:
        return len(self.centroids)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.assignment, minlength=self.k)


def cluster_users(user_vecs: np.ndarray, k: int, metric: str = "cosine", backend: str = "kmeans",
                  seed: int = 0) -> Clusters:
    """Cluster ``user_vecs`` ``[N, H]`` into ``k`` groups (clamped to N with a warning)."""
    if metric not in METRICS:
        raise ClusteringError(f"cluster metric {metric!r}: expected one of {METRICS}")
    if backend not in BACKENDS:
        raise ClusteringError(f"cluster backend {backend!r}: expected one of {BACKENDS}")
    n_users = len(user_vecs)
    if n_users == 0:
        raise ClusteringError("no users to cluster")
    if k < 1:
        raise ClusteringError(f"clusters = {k}: expected an int >= 1 (0 means per-user generation)")
    if k > n_users:
        warnings.warn(f"clusters = {k} is more than the {n_users} users; using {n_users}", stacklevel=2)
        k = n_users
    points = np.asarray(user_vecs, dtype=np.float32)
    if metric == "cosine":
        points = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
    assignment = _fit(points, k, backend, seed)
    # keep cluster ids dense: k-means may leave a cluster empty
    _, assignment = np.unique(assignment, return_inverse=True)
    centroids = np.stack([user_vecs[assignment == c].mean(axis=0) for c in range(assignment.max() + 1)])
    return Clusters(assignment=assignment.astype(np.int64), centroids=centroids.astype(np.float32))


def _fit(points: np.ndarray, k: int, backend: str, seed: int) -> np.ndarray:
    if backend == "faiss":
        try:
            import faiss
        except ImportError as exc:
            raise ClusteringError("cluster backend 'faiss' needs the faiss package (pip install faiss-cpu)") from exc
        kmeans = faiss.Kmeans(points.shape[1], k, niter=25, seed=seed, verbose=False)
        kmeans.train(points)
        return kmeans.index.search(points, 1)[1][:, 0]
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if backend == "minibatch":
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=1024)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=3)
    return model.fit_predict(points)
