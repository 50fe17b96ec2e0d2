"""RGB statistics of a set of images and the PCA colour noise of the training augmentation."""
import numpy as np

from data import h36m


class ImageStats:
    """RGB statistics of a set of images (pixel values 0..255).

    mean (3,), cov (3,3), eigval (3,) descending with eigvec (3,3) columns (cov = V diag(l) V^T),
    scale = sqrt(trace(cov) / 3), the RMS per-channel standard deviation: inputs are fed to the
    network as (x + colour_noise - mean) / scale, about unit variance.
    """

    def __init__(self, mean, cov):
        self.mean = np.asarray(mean, dtype=np.float64).reshape(3)
        self.cov = np.asarray(cov, dtype=np.float64).reshape(3, 3)
        eigval, eigvec = np.linalg.eigh(self.cov)
        order = np.argsort(eigval)[::-1]
        self.eigval = np.maximum(eigval[order], 0.0)
        self.eigvec = eigvec[:, order]
        self.scale = float(np.sqrt(max(np.trace(self.cov) / 3, 1e-12)))

    @classmethod
    def from_moments(cls, count, total, outer):
        """From the pixel count, per-channel sum (3,) and sum of outer products (3,3)."""
        mean = np.asarray(total, dtype=np.float64) / count
        cov = np.asarray(outer, dtype=np.float64) / count - np.outer(mean, mean)
        return cls(mean, cov)

    @classmethod
    def compute(cls, dataset, idx, chunk=512):
        """One chunked pass over the images of rows idx of a PoseDataset."""
        idx = np.asarray(idx, dtype=np.int64)
        if len(idx) == 0:
            raise ValueError("ImageStats.compute: no images selected")
        count, total, outer = 0, np.zeros(3), np.zeros((3, 3))
        for lo in range(0, len(idx), chunk):
            pixels = dataset.read_images(np.sort(idx[lo:lo + chunk])).reshape(-1, 3).astype(np.float64)
            count += len(pixels)
            total += pixels.sum(axis=0)
            outer += pixels.T @ pixels
        return cls.from_moments(count, total, outer)

    @classmethod
    def for_subjects(cls, dataset, subjects):
        """Statistics of all images of `subjects`, from the file's stored moments when present."""
        names = h36m.parse_subjects(subjects)
        moments = dataset.image_moments(names)
        if moments is None:
            return cls.compute(dataset, dataset.select(subjects=names))
        return cls.from_moments(*moments)

    def color_noise(self, alpha):
        """PCA colour shifts (B,3) for coefficients alpha (B,3): V @ (alpha * sqrt(eigval)).

        AlexNet ("As in [17]") adds sum_i alpha_i lambda_i p_i with alpha_i ~ N(0, 0.1). We take
        lambda_i as the standard deviation along principal axis p_i (sqrt of the covariance
        eigenvalue) so the shift is in pixel units: noise_std = 0.1 moves colours by 10% of their
        spread along each axis, whatever the images' contrast.
        """
        return (np.asarray(alpha) * np.sqrt(self.eigval)) @ self.eigvec.T

    def to_dict(self):
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist()}

    @classmethod
    def from_dict(cls, d):
        return cls(d["mean"], d["cov"])
