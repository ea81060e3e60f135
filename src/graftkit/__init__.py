"""graftkit: adapt pretrained models to your own small labelled data set, the way the literature says works."""

from graftkit.active import simulate as simulate_suggestions, suggest
from graftkit.adapters import load_adapters
from graftkit.loading import load_model
from graftkit.data import Table, load_data
from graftkit.data.media import max_image_pixels
from graftkit.errors import ArtifactError, BackboneError, ConfigError, DataError, GraftkitError
from graftkit.graft import Graft
from graftkit.playbook import auto
from graftkit.selection import rank
from graftkit.tasks import infer_task
from graftkit.training.pretrain import PretrainConfig, pretrain
from graftkit.threads import set_threads

__version__ = "0.1.0"


def load(path, **options):
    """A saved model directory back into a fitted model: a ``Graft`` (``graftkit fit``), or a ``FusionModel`` for a
    directory holding ``fusion.json`` (``graftkit fuse``: several inputs per row). ``options``: ``device``,
    ``cache_dir``, ``use_cache``, ``progress`` (and ``adapter_name``, ``extract_runtime`` for a ``Graft``)."""
    from graftkit.fusion.model import is_fusion_model, load_fusion

    return load_fusion(path, **options) if is_fusion_model(path) else load_model(path, **options)

__all__ = ["ArtifactError", "BackboneError", "ConfigError", "DataError", "Graft", "GraftkitError", "Table",
           "__version__", "auto", "infer_task", "load", "load_adapters", "load_data", "max_image_pixels",
           "PretrainConfig", "pretrain", "rank", "set_threads", "simulate_suggestions", "suggest"]
