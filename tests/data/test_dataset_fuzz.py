"""A fuzz of the HDF5 reader: a small valid file with datasets and attributes replaced by wrong
shapes, dtypes, NaN, huge values, truncated or empty arrays, groups or garbage. Opening it (and
every accessor a run uses) succeeds or raises DatasetError naming the field; nothing else, and
no warning."""
import shutil
import tempfile
import warnings

import h5py
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from data.dataset import DatasetError, PoseDataset
from tests.data.conftest import write_tiny_dataset

DATASETS = ["images", "poses", "subject", "action", "subaction", "camera", "frame", "box", "tpose/S1",
            "bank/poses", "bank/subject", "bank/action", "bank/subaction", "bank/camera", "bank/frame",
            "bank/image_row"]
ATTRIBUTES = [("", "format_version"), ("", "source"), ("", "joint_names"), ("", "parents"), ("", "cameras"),
              ("", "generator"), ("bank", "rate_hz"), ("image_moments/S1", "count"),
              ("image_moments/S1", "sum"), ("image_moments/S1", "outer")]


def _dataset_edit(kind, row):
    """A new value for a dataset from its current one (None: delete it)."""
    def edit(a):
        a = np.asarray(a)
        flat = a.reshape(-1)
        return {
            "delete": lambda: None,
            "truncate": lambda: a[:-1],
            "empty": lambda: a[:0],
            "extra row": lambda: np.concatenate([a, a[:1]]),
            "scalar": lambda: flat[0] if a.size else np.float32(0),
            "drop axis": lambda: a[..., 0] if a.ndim > 1 else a.reshape(-1, 1),
            "add axis": lambda: a[..., None],
            "float64": lambda: a.astype(np.float64) if a.dtype.kind in "fiu" else a,
            "to int": lambda: np.clip(np.nan_to_num(a), -1e9, 1e9).astype(np.int64) if a.dtype.kind == "f" else a,
            "to bytes": lambda: np.array([b"x"] * max(len(a), 1)),
            "non-UTF-8": lambda: np.array([b"\xff\xfe"] * max(len(a), 1)),
            "nan": lambda: _set(a, row, np.nan) if a.dtype.kind == "f" else a,
            "huge": lambda: _set(a.astype(np.float64), row, 1e300) if a.dtype.kind in "fiu" else a,
            "negative": lambda: _set(a, row, -7) if a.dtype.kind in "fi" else a,
            "shuffle": lambda: flat[::-1].reshape(a.shape),
        }[kind]() if a.ndim else (None if kind == "delete" else a)
    return edit


def _set(a, row, value):
    a = a.copy()
    if a.size:
        a.reshape(-1)[row % a.size] = value
    return a


ATTRIBUTE_VALUES = [None, 2, np.int64(7), np.nan, "x", "[1, 2]", "{}", np.zeros(3), np.full((3, 3), np.nan),
                    b"\xff", np.array([1e300]), -1]


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "valid.h5"
    return write_tiny_dataset(path, n_per=2, subjects=("S1", "S9"), actions=("Walking",), image_size=8,
                              bank_extra=1)


def _use(ds):
    """What training and evaluation read from an open file."""
    ds.select(subjects=list(ds.subjects))
    ds.bank_select(subjects=list(ds.subjects))
    ds.poses(), ds.bank_poses(), ds.bank_image_rows(), ds.metadata(), ds.boxes(), ds.read_images([0])
    for s in ds.subjects:
        ds.tpose(s)
    ds.image_moments(ds.subjects)
    ds.crop_joints([0])
    ds.fingerprint()


def _field_named(message, group, name):
    field = f"{group}/{name}".lstrip("/")
    if field in message:
        return True
    # a missing T pose / image-moment group is blamed on its group, naming the subject
    top, _, subject = field.partition("/")
    return top in ("tpose", "image_moments") and top in message and subject[:2] in message


DATASET_EDITS = ["delete", "truncate", "empty", "extra row", "scalar", "drop axis", "add axis", "float64", "to int",
                 "to bytes", "non-UTF-8", "nan", "huge", "negative", "shuffle", "group"]
CORRUPTIONS = st.one_of(
    st.tuples(st.just("dataset"), st.sampled_from(DATASETS), st.sampled_from(DATASET_EDITS), st.integers(0, 10 ** 6)),
    st.tuples(st.just("attribute"), st.sampled_from(ATTRIBUTES), st.sampled_from(range(len(ATTRIBUTE_VALUES))),
              st.just(0)))


def _check(valid_file, corruptions):
    """Apply corruptions to a copy of valid_file; opening and using it must succeed or raise a
    one-line DatasetError naming a corrupted field."""
    with tempfile.TemporaryDirectory() as tmp:
        path = shutil.copy(valid_file, f"{tmp}/x.h5")
        touched = []
        with h5py.File(path, "r+") as f, np.errstate(all="ignore"):
            for what, where, how, row in corruptions:
                if what == "dataset":
                    group, _, name = where.rpartition("/")
                    if not isinstance(f.get(where), h5py.Dataset):
                        continue
                    value = f[where][()]
                    del f[where]
                    if how == "group":
                        f.create_group(where)
                    else:
                        new = _dataset_edit(how, row)(value)
                        if new is not None:
                            f[where] = new
                else:
                    (group, name), value = where, ATTRIBUTE_VALUES[how]
                    if group not in f and group:
                        continue
                    attrs = (f[group] if group else f).attrs
                    if value is None:
                        attrs.pop(name, None)
                    else:
                        attrs[name] = value
                touched.append((group, name))
        with warnings.catch_warnings():
            warnings.simplefilter("error")     # a warning would be printed before the error
            try:
                with PoseDataset(path) as ds:
                    _use(ds)
            except DatasetError as err:
                message = str(err)
                assert "\n" not in message and message.startswith(f"{path}: ")
                assert any(_field_named(message, g, n) for g, n in touched), (corruptions, message)


def test_every_single_corruption(valid_file):
    for where in DATASETS:
        for how in DATASET_EDITS:
            _check(valid_file, [("dataset", where, how, 3)])
    for where in ATTRIBUTES:
        for how in range(len(ATTRIBUTE_VALUES)):
            _check(valid_file, [("attribute", where, how, 0)])


@settings(max_examples=200)
@given(corruptions=st.lists(CORRUPTIONS, min_size=2, max_size=3))
def test_combined_corruptions(valid_file, corruptions):
    _check(valid_file, corruptions)
