"""NCE: negative conditional entropy of the target labels given the source model's labels.

Tran, Nguyen & Hassner, "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019
(arXiv:1908.08142).
"""

from __future__ import annotations

import numpy as np

from graftkit.errors import DataError
from graftkit.selection.inputs import as_labels


def nce(source_labels, labels) -> float:
    """NCE (Tran et al., ICCV 2019): ``-H(Y | Z)`` over the empirical joint of the target label ``y`` and the
    source label ``z`` of each example (here: the argmax of the source classifier). 0 when the source
    label determines the target label; more negative as it says less. Higher = more transferable.
    """
    z = np.asarray(source_labels)
    if z.ndim != 1:
        raise DataError(f"source labels must be one label per example (a 1-D array); got shape {z.shape}")
    _, codes = as_labels(labels, len(z))
    _, z_codes = np.unique(z, return_inverse=True)
    joint = np.zeros((int(codes.max()) + 1, int(z_codes.max()) + 1))
    np.add.at(joint, (codes, z_codes), 1.0)
    joint /= len(z)
    marginal = joint.sum(axis=0, keepdims=True)
    present = joint > 0
    conditional_entropy = -float(np.sum(joint[present] * np.log((joint / marginal)[present])))
    return -conditional_entropy
